// IP addresses and prefixes in the one 16-byte form the ABI uses (IPv4 is
// IPv4-mapped), MAC addresses, and their parsing/formatting.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace zw::net {

struct Addr {
  std::array<uint8_t, 16> bytes{};  // network order, ::ffff:a.b.c.d for IPv4
  bool is_v4() const;
  std::string str() const;
  auto operator<=>(const Addr&) const = default;
};

struct Cidr {
  Addr addr;    // masked to len
  int len = 0;  // prefix length in the address's own family (0..32 / 0..128)
  bool v4 = false;
  int bits128() const { return v4 ? 96 + len : len; }  // length over 16 bytes
  bool contains(const Addr& a) const;
  std::string str() const;
  auto operator<=>(const Cidr&) const = default;
};

using Mac = std::array<uint8_t, 6>;

std::optional<Addr> parse_addr(std::string_view s);
// Rejects host bits set ("10.0.0.1/8") so a typo cannot widen a zone silently.
std::optional<Cidr> parse_cidr(std::string_view s, std::string* why = nullptr);
std::optional<Mac> parse_mac(std::string_view s);
std::string mac_str(const Mac& m);

// The interfaces of this network namespace, name -> index, read once
// (if_nameindex(3): one netlink dump) instead of one socket and ioctl per
// name as if_nametoindex(3) costs: 10,000 VM interfaces are 10,000 of those.
class InterfaceIndexes {
 public:
  InterfaceIndexes();                                  // the snapshot
  uint32_t operator()(const std::string& name) const;  // 0: no such interface

 private:
  std::unordered_map<std::string, uint32_t> by_name_;
  bool read_ = false;  // false: the snapshot failed; ask the kernel name by name
};

}  // namespace zw::net
