// libFuzzer target: the static inventory parser. No crash, leak or UB; every
// error names the file; unknown keys anywhere in an accepted inventory are
// refused; accepted addresses and MACs survive formatting and re-parsing.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "inventory/static_json.h"
#include "unknown_keys.h"

using namespace zw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto inv = inventory::parse_static(text, "fuzz-inventory.json");
  if (!inv) {
    if (inv.error().str().find("fuzz-inventory.json") == std::string::npos) {
      std::fprintf(stderr, "error does not name the file: %s\n", inv.error().str().c_str());
      std::abort();
    }
    return 0;
  }
  fuzz::expect_unknown_keys_rejected(text, [](const std::string& t) {
    auto q = inventory::parse_static(t, "fuzz-inventory.json");
    return q ? std::string() : q.error().str();
  });
  for (const auto& e : inv->endpoints) {
    for (const auto& a : e.addrs) {
      auto back = net::parse_addr(a.str());
      if (!back || *back != a) {
        std::fprintf(stderr, "address %s does not round-trip\n", a.str().c_str());
        std::abort();
      }
    }
    if (e.mac && net::parse_mac(net::mac_str(*e.mac)) != e.mac) {
      std::fprintf(stderr, "MAC %s does not round-trip\n", net::mac_str(*e.mac).c_str());
      std::abort();
    }
  }
  return 0;
}
