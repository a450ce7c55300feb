// Names from guests, libvirt or the kernel (VM names, interface names) on
// their way to a terminal or a JSON encoder: a hostile VM name must not
// move the admin's cursor, recolour the screen or break the JSON writer.
#pragma once

#include <string>
#include <string_view>

namespace zw::text {

// Every byte that is a C0 control, DEL, part of a C1 control (U+0080 to
// U+009F, which some terminals obey) or not part of valid UTF-8 becomes
// \xNN; with `ascii`, so does every byte above 0x7e. The result is valid
// UTF-8 and prints as what it is.
std::string printable(std::string_view s, bool ascii = false);

// The same for text of several lines: its line breaks are kept.
std::string printable_lines(std::string_view s);

}  // namespace zw::text
