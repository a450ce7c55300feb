// text::printable: names from guests, libvirt and the kernel on their way to
// terminals, logs and JSON.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "util/log.h"
#include "util/text.h"

using zw::text::printable;

TEST(Text, PlainNamesAndUtf8PassUnchanged) {
  EXPECT_EQ(printable("web-1"), "web-1");
  EXPECT_EQ(printable("db_ü_€_𝄞"), "db_ü_€_𝄞");  // 2-, 3- and 4-byte sequences
  EXPECT_EQ(printable(""), "");
}

TEST(Text, TerminalControlsAreEscaped) {
  // ESC [2J (clear screen), BEL, DEL, a newline forging a second line.
  EXPECT_EQ(printable("a\x1b[2Jb\x07\x7f\nc"), "a\\x1b[2Jb\\x07\\x7f\\x0ac");
  // C1 CSI as UTF-8 (U+009B), which some terminals obey like ESC [.
  EXPECT_EQ(printable("x\xc2\x9b"
                      "31m"),
            "x\\xc2\\x9b31m");
  // U+00A0 is not a control: kept.
  EXPECT_EQ(printable("\xc2\xa0"), "\xc2\xa0");
}

TEST(Text, InvalidUtf8IsEscapedSoTheResultIsValid) {
  EXPECT_EQ(printable("a\xff"
                      "b"),
            "a\\xffb");
  EXPECT_EQ(printable("\xc3\x28"), "\\xc3(");                        // bad continuation
  EXPECT_EQ(printable("\xe2\x82"), "\\xe2\\x82");                    // truncated at the end
  EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");                    // overlong '/'
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // surrogate U+D800
  EXPECT_EQ(printable("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  // Whatever goes in, a JSON encoder accepts what comes out.
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  EXPECT_NO_THROW((void)nlohmann::json(printable(all + all.substr(128))).dump());
}

TEST(Text, AsciiModeEscapesEverythingAbove0x7e) {
  EXPECT_EQ(printable("tap\xc3\xbc", true), "tap\\xc3\\xbc");
  EXPECT_EQ(printable("tap0", true), "tap0");
}

TEST(Text, LogLinesCarryNoRawControlBytes) {
  testing::internal::CaptureStderr();
  zw::log::warn("vm \x1b[31mred", {{"vm", "evil\x1b]0;title\x07\n level=error"}});
  std::string line = testing::internal::GetCapturedStderr();
  EXPECT_EQ(line.find('\x1b'), std::string::npos) << line;
  EXPECT_EQ(line.find('\x07'), std::string::npos) << line;
  // One line: the guest cannot forge a second log record.
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  // printable's \xNN, then logfmt's quoting of the backslash.
  EXPECT_NE(line.find(R"(vm="evil\\x1b]0;title\\x07\\x0a level=error")"), std::string::npos)
      << line;
}

TEST(Text, PrintableLinesKeepsOnlyTheLineBreaks) {
  EXPECT_EQ(zw::text::printable_lines("a\x1b\nb\r\n\n"), "a\\x1b\nb\\x0d\n\n");
  EXPECT_EQ(zw::text::printable_lines("one line"), "one line");
  EXPECT_EQ(zw::text::printable_lines(""), "");
}
