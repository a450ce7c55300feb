// Crafting test frames: Ethernet + IPv4/IPv6 + TCP/UDP/ICMP, by hand so a
// test can build exactly the odd packet it wants. Checksums are left zero:
// the datapath does not verify them.
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace zw::test {

using Bytes = std::vector<uint8_t>;

inline void put16(Bytes& b, uint16_t v) {
  b.push_back(v >> 8);
  b.push_back(v & 0xff);
}

inline Bytes eth(uint16_t ethertype, const uint8_t* src_mac = nullptr) {
  static const uint8_t dst[6] = {0x52, 0x54, 0, 0, 0, 0xfe};
  static const uint8_t src[6] = {0x52, 0x54, 0, 0, 0, 0x01};
  Bytes b(dst, dst + 6);
  b.insert(b.end(), src_mac ? src_mac : src, (src_mac ? src_mac : src) + 6);
  put16(b, ethertype);
  return b;
}

inline bool is_v6(const std::string& a) { return a.find(':') != std::string::npos; }

// L4 header bytes.
inline Bytes tcp(uint16_t sport, uint16_t dport, uint8_t flags = 0x02) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  b.insert(b.end(), {0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0});
  return b;
}
inline Bytes udp(uint16_t sport, uint16_t dport, size_t payload = 4) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put16(b, static_cast<uint16_t>(8 + payload));
  put16(b, 0);
  b.insert(b.end(), payload, 0xab);
  return b;
}
inline Bytes icmp(uint8_t type, uint8_t code = 0, uint16_t id = 0x1234, uint16_t seq = 1) {
  Bytes b{type, code, 0, 0};
  put16(b, id);
  put16(b, seq);
  return b;
}

// An ICMPv6 neighbour discovery message: RS (133, no target), NS (135) or
// NA (136) with `target`, and a link-layer address option (type 1 source,
// 2 target) carrying `lladdr` when given.
inline Bytes nd(uint8_t type, const std::string& target = "", const uint8_t* lladdr = nullptr,
                uint8_t opt_type = 0) {
  Bytes b{type, 0, 0, 0, 0, 0, 0, 0};
  if (!target.empty()) {
    uint8_t a[16];
    inet_pton(AF_INET6, target.c_str(), a);
    b.insert(b.end(), a, a + 16);
  }
  if (lladdr) {
    b.push_back(opt_type ? opt_type : (type == 136 ? 2 : 1));
    b.push_back(1);
    b.insert(b.end(), lladdr, lladdr + 6);
  }
  return b;
}

// An IP packet (with Ethernet) carrying `l4` with protocol `proto`.
inline Bytes ip(const std::string& src, const std::string& dst, uint8_t proto, const Bytes& l4,
                uint16_t frag_off = 0) {
  Bytes b;
  if (is_v6(src)) {
    b = eth(0x86dd);
    b.insert(b.end(), {0x60, 0, 0, 0});
    put16(b, static_cast<uint16_t>(l4.size()));
    b.push_back(proto);
    b.push_back(64);
    uint8_t a[16];
    inet_pton(AF_INET6, src.c_str(), a);
    b.insert(b.end(), a, a + 16);
    inet_pton(AF_INET6, dst.c_str(), a);
    b.insert(b.end(), a, a + 16);
  } else {
    b = eth(0x0800);
    b.insert(b.end(), {0x45, 0});
    put16(b, static_cast<uint16_t>(20 + l4.size()));
    b.insert(b.end(), {0, 1});
    put16(b, frag_off);
    b.push_back(64);
    b.push_back(proto);
    b.insert(b.end(), {0, 0});
    uint8_t a[4];
    inet_pton(AF_INET, src.c_str(), a);
    b.insert(b.end(), a, a + 4);
    inet_pton(AF_INET, dst.c_str(), a);
    b.insert(b.end(), a, a + 4);
  }
  b.insert(b.end(), l4.begin(), l4.end());
  return b;
}

// The IP packet without its Ethernet header (to quote inside ICMP errors).
inline Bytes strip_eth(const Bytes& frame) { return Bytes(frame.begin() + 14, frame.end()); }

}  // namespace zw::test
