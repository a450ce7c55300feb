// "No accepted-but-ignored field": for a document the parser accepted, an
// extra key in any of its objects must make it refuse the document, naming
// the key. Every object the parser reads is checked against its known fields.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace zw::fuzz {

inline constexpr const char* kUnknownKey = "zw_fuzz_unknown_key";

// Calls `parse_fails(text)` with the key added to each object (up to
// `limit`); aborts if one is accepted or the error does not name the key.
inline void expect_unknown_keys_rejected(
    const std::string& text, const std::function<std::string(const std::string&)>& error_of,
    int limit = 24) {
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded()) return;
  std::vector<nlohmann::json::json_pointer> objects;
  std::function<void(const nlohmann::json&, const nlohmann::json::json_pointer&)> walk =
      [&](const nlohmann::json& j, const nlohmann::json::json_pointer& at) {
        if (static_cast<int>(objects.size()) >= limit) return;
        if (j.is_object()) {
          objects.push_back(at);
          for (const auto& [k, v] : j.items()) walk(v, at / k);
        } else if (j.is_array()) {
          for (size_t i = 0; i < j.size(); ++i) walk(j[i], at / i);
        }
      };
  walk(doc, nlohmann::json::json_pointer());
  for (const auto& at : objects) {
    nlohmann::json changed = doc;
    if (changed[at].contains(kUnknownKey)) continue;
    changed[at][kUnknownKey] = 1;
    std::string err = error_of(changed.dump());
    if (err.empty() || err.find(kUnknownKey) == std::string::npos) {
      std::fprintf(stderr, "accepted-but-ignored: key '%s' at '%s' %s\n%s\n", kUnknownKey,
                   at.to_string().c_str(),
                   err.empty() ? "was accepted" : "error does not name it:", err.c_str());
      std::abort();
    }
  }
}

}  // namespace zw::fuzz
