// Reading user-written JSON: file limits, syntax errors with line/column,
// duplicate keys and nesting depth caught while nlohmann parses.
#include "util/json_doc.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

namespace zw::jsondoc {

namespace fs = std::filesystem;
using nlohmann::json;

Result<std::string> read_file(const std::string& path) {
  std::error_code ec;
  auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    if (ec && ec != std::errc::no_such_file_or_directory) return fail(Error::sys(path, ec.value()));
    return fail(Error::invalid(path + ": no such file or directory"));
  }
  if (fs::is_directory(st)) return fail(Error::invalid(path + ": is a directory, expected a file"));
  auto size = fs::file_size(path, ec);
  if (ec) return fail(Error::sys(path, ec.value()));
  if (size > kMaxFileBytes)
    return fail(Error::invalid(path + ": " + std::to_string(size) +
                               " bytes, larger than the 16 MiB limit"));
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Error::sys(path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return fail(Error::sys(path));
  std::string text = ss.str();
  // The file may have grown between stat and read.
  if (text.size() > kMaxFileBytes)
    return fail(Error::invalid(path + ": larger than the 16 MiB limit"));
  return text;
}

std::string token(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

// Thrown from the parser callback to stop before nesting gets deeper;
// nlohmann's parser is iterative, but every walker after it is not.
struct TooDeep {
  std::string pointer;
};

// Tracks the JSON pointer of the value being parsed, to name duplicate keys.
class Tracker {
 public:
  Tracker(const std::string& file, std::vector<std::string>& errors)
      : file_(file), errors_(errors) {}

  bool on_event(json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start: {
        std::string ptr = child_pointer();
        if (frames_.size() >= static_cast<std::size_t>(kMaxDepth)) throw TooDeep{ptr};
        frames_.push_back({event == json::parse_event_t::array_start, 0, {}, {}, std::move(ptr)});
        break;
      }
      case json::parse_event_t::key: {
        auto& f = frames_.back();
        f.key = parsed.get<std::string>();
        if (!f.keys.insert(f.key).second)
          errors_.push_back(file_ + ": " + f.pointer + "/" + token(f.key) + ": duplicate key '" +
                            f.key + "'");
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        frames_.pop_back();
        advance();
        break;
      case json::parse_event_t::value:
        advance();
        break;
    }
    return true;
  }

 private:
  struct Frame {
    bool array;
    std::size_t index;
    std::string key;
    std::set<std::string> keys;
    std::string pointer;
  };

  std::string child_pointer() const {
    if (frames_.empty()) return "";
    const auto& f = frames_.back();
    return f.pointer + "/" + (f.array ? std::to_string(f.index) : token(f.key));
  }
  void advance() {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
  }

  const std::string& file_;
  std::vector<std::string>& errors_;
  std::vector<Frame> frames_;
};

}  // namespace

std::optional<json> parse(const std::string& text, const std::string& file,
                          std::vector<std::string>& errors) {
  std::vector<std::string> local;
  Tracker tracker(file, local);
  json::parser_callback_t cb = [&tracker](int, json::parse_event_t ev, json& parsed) {
    return tracker.on_event(ev, parsed);
  };
  try {
    json doc = json::parse(text, cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
    if (!local.empty()) {
      errors.insert(errors.end(), local.begin(), local.end());
      return std::nullopt;
    }
    return doc;
  } catch (const TooDeep& t) {
    errors.push_back(file + ": " + t.pointer + ": nested deeper than " + std::to_string(kMaxDepth) +
                     " levels");
  } catch (const json::parse_error& e) {
    std::size_t pos = std::min<std::size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
    std::size_t line = 1, line_start = 0;
    for (std::size_t i = 0; i < pos; ++i) {
      if (text[i] == '\n') {
        ++line;
        line_start = i + 1;
      }
    }
    std::size_t col = pos - line_start + 1;
    std::string what = e.what();
    if (auto k = what.find(", column "); k != std::string::npos) {
      if (auto c = what.find(": ", k); c != std::string::npos) what = what.substr(c + 2);
    } else if (auto b = what.find("] "); b != std::string::npos) {
      what = what.substr(b + 2);
    }
    errors.push_back(file + ": line " + std::to_string(line) + ", column " + std::to_string(col) +
                     ": " + what);
  } catch (const json::exception& e) {
    errors.push_back(file + ": " + e.what());
  }
  return std::nullopt;
}

std::string show(const json& v) {
  switch (v.type()) {
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::null:
      return "null";
    case json::value_t::string: {
      const auto& s = v.get_ref<const std::string&>();
      if (s.size() > 64) return json(s.substr(0, 61) + "...").dump();
      return v.dump();
    }
    default:
      return v.dump();
  }
}

void Walker::error(const std::string& pointer, const std::string& what) {
  errors_.push_back(file_ + ": " + (pointer.empty() ? "/" : pointer) + ": " + what);
}

bool Walker::expect_object(const json& v, const std::string& pointer) {
  if (v.is_object()) return true;
  error(pointer, "expected an object, got " + show(v));
  return false;
}

bool Walker::expect_array(const json& v, const std::string& pointer) {
  if (v.is_array()) return true;
  error(pointer, "expected an array, got " + show(v));
  return false;
}

bool Walker::expect_string(const json& v, const std::string& pointer) {
  if (v.is_string()) return true;
  error(pointer, "expected a string, got " + show(v));
  return false;
}

bool Walker::expect_bool(const json& v, const std::string& pointer) {
  if (v.is_boolean()) return true;
  error(pointer, "expected true or false, got " + show(v));
  return false;
}

void Walker::check_fields(const json& obj, const std::string& pointer,
                          std::initializer_list<std::string_view> allowed) {
  for (const auto& [k, _] : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
    std::string known;
    for (auto a : allowed) known += (known.empty() ? "" : ", ") + std::string(a);
    error(pointer + "/" + token(k), "unknown field '" + k + "' (known: " + known + ")");
  }
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Error invalid(const std::vector<std::string>& errors) {
  std::string msg;
  for (const auto& e : errors) {
    if (!msg.empty()) msg += '\n';
    msg += e;
  }
  return Error::invalid(std::move(msg));
}

}  // namespace zw::jsondoc
