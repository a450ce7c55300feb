// Address parsing on top of inet_pton/inet_ntop.
#include "util/net.h"

#include <arpa/inet.h>
#include <net/if.h>

#include <charconv>
#include <cstdio>
#include <cstring>

namespace zw::net {

namespace {
constexpr std::array<uint8_t, 12> kV4Prefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
}

bool Addr::is_v4() const { return std::memcmp(bytes.data(), kV4Prefix.data(), 12) == 0; }

std::string Addr::str() const {
  char buf[INET6_ADDRSTRLEN];
  if (is_v4()) {
    inet_ntop(AF_INET, bytes.data() + 12, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  }
  return buf;
}

std::optional<Addr> parse_addr(std::string_view s) {
  std::string str(s);
  Addr a;
  if (str.find(':') == std::string::npos) {
    in_addr v4{};
    if (inet_pton(AF_INET, str.c_str(), &v4) != 1) return std::nullopt;
    std::memcpy(a.bytes.data(), kV4Prefix.data(), 12);
    std::memcpy(a.bytes.data() + 12, &v4, 4);
    return a;
  }
  if (inet_pton(AF_INET6, str.c_str(), a.bytes.data()) != 1) return std::nullopt;
  if (a.is_v4()) return std::nullopt;  // ::ffff:a.b.c.d: write it as IPv4
  return a;
}

bool Cidr::contains(const Addr& a) const {
  int bits = bits128();
  for (int i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
    uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((a.bytes[i] & mask) != addr.bytes[i]) return false;
  }
  return true;
}

std::string Cidr::str() const { return addr.str() + "/" + std::to_string(len); }

std::optional<Cidr> parse_cidr(std::string_view s, std::string* why) {
  auto slash = s.find('/');
  if (slash == std::string_view::npos) {
    if (why) *why = "missing /prefix-length";
    return std::nullopt;
  }
  auto a = parse_addr(s.substr(0, slash));
  if (!a) {
    if (why) *why = "not an IP address";
    return std::nullopt;
  }
  auto lenstr = s.substr(slash + 1);
  int len = -1;
  auto [p, ec] = std::from_chars(lenstr.data(), lenstr.data() + lenstr.size(), len);
  int max = a->is_v4() ? 32 : 128;
  if (ec != std::errc() || p != lenstr.data() + lenstr.size() || len < 0 || len > max) {
    if (why) *why = "prefix length must be 0.." + std::to_string(max);
    return std::nullopt;
  }
  Cidr c{*a, len, a->is_v4()};
  int bits = c.bits128();
  for (int i = 0; i < 16; ++i, bits -= 8) {
    uint8_t mask = bits >= 8 ? 0xff : bits <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - bits));
    if ((c.addr.bytes[i] & ~mask) != 0) {
      if (why) *why = "host bits set (did you mean the network address?)";
      return std::nullopt;
    }
  }
  return c;
}

std::optional<Mac> parse_mac(std::string_view s) {
  Mac m{};
  unsigned v[6];
  char tail;
  std::string str(s);
  if (std::sscanf(str.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4],
                  &v[5], &tail) != 6 ||
      str.size() != 17)
    return std::nullopt;
  for (int i = 0; i < 6; ++i) m[i] = static_cast<uint8_t>(v[i]);
  return m;
}

std::string mac_str(const Mac& m) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
                m[5]);
  return buf;
}

InterfaceIndexes::InterfaceIndexes() {
  struct if_nameindex* all = if_nameindex();
  if (!all) return;
  for (const struct if_nameindex* i = all; i->if_index != 0 && i->if_name; ++i)
    by_name_.emplace(i->if_name, i->if_index);
  if_freenameindex(all);
  read_ = true;
}

uint32_t InterfaceIndexes::operator()(const std::string& name) const {
  if (!read_) return if_nametoindex(name.c_str());
  auto it = by_name_.find(name);
  return it == by_name_.end() ? 0 : it->second;
}

}  // namespace zw::net
