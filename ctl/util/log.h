// Structured logging to stderr: `level=info msg="..." key=value ...`.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace zw::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_level(Level l);
Level level();

using Fields = std::initializer_list<std::pair<std::string_view, std::string>>;
void write(Level l, std::string_view msg, Fields fields = {});

inline void debug(std::string_view m, Fields f = {}) { write(Level::kDebug, m, f); }
inline void info(std::string_view m, Fields f = {}) { write(Level::kInfo, m, f); }
inline void warn(std::string_view m, Fields f = {}) { write(Level::kWarn, m, f); }
inline void error(std::string_view m, Fields f = {}) { write(Level::kError, m, f); }

}  // namespace zw::log
