// logfmt-style lines on stderr, one per event.
#include "util/log.h"

#include <cstdio>
#include <string>

#include "util/text.h"

namespace zw::log {

namespace {
Level g_level = Level::kWarn;

// Values quote names from libvirt and the kernel: control bytes and
// invalid UTF-8 escaped (text::printable), then logfmt quoting.
std::string quote(std::string_view raw) {
  std::string safe = text::printable(raw);
  std::string_view v = safe;
  bool plain = !v.empty();
  for (char c : v)
    if (c == ' ' || c == '"' || c == '=' || c == '\n' || c == '\\') plain = false;
  if (plain) return std::string(v);
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

const char* name(Level l) {
  switch (l) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "?";
}
}  // namespace

void set_level(Level l) { g_level = l; }
Level level() { return g_level; }

void write(Level l, std::string_view msg, Fields fields) {
  if (l < g_level) return;
  std::string line = "level=";
  line += name(l);
  line += " msg=";
  line += quote(msg);
  for (const auto& [k, v] : fields) {
    line += ' ';
    line += k;
    line += '=';
    line += quote(v);
  }
  line += '\n';
  std::fputs(line.c_str(), stderr);
}

}  // namespace zw::log
