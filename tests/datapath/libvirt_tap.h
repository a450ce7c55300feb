// A tap made the way libvirt makes one for a starting VM (virNetDevTapCreate
// then virNetDevSetMAC, virNetDevSetOnline): TUNSETIFF creates it with a
// random MAC, then it gets the host-side MAC, then it goes up; ioctls only,
// microseconds apart, as libvirtd does them. The tap lives as long as the
// object (the file descriptor QEMU would hold). Shared by the datapath tests
// and zw_bench start-latency.
#pragma once

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

#include "util/net.h"

namespace zw::test {

class LibvirtTap {
 public:
  using Clock = std::chrono::steady_clock;

  // Creates `name`; then, unless `mac` is null, gives it that MAC and sets it up.
  LibvirtTap(const std::string& name, const net::Mac* mac) : name_(name) {
    fd_ = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd_ < 0) return;
    ifreq ifr{};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (::ioctl(fd_, TUNSETIFF, &ifr) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    created = Clock::now();
    if (mac == nullptr) return;
    ok_ = set_mac(*mac);
    mac_set = Clock::now();
    ok_ = ok_ && set_up();
  }
  ~LibvirtTap() {
    if (fd_ >= 0) ::close(fd_);  // a non-persistent tap goes with its last descriptor
  }
  LibvirtTap(const LibvirtTap&) = delete;
  LibvirtTap& operator=(const LibvirtTap&) = delete;

  bool ok() const { return fd_ >= 0 && ok_; }
  bool set_mac(const net::Mac& mac) {
    ifreq ifr = named();
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    std::memcpy(ifr.ifr_hwaddr.sa_data, mac.data(), mac.size());
    return ctl(SIOCSIFHWADDR, ifr);
  }
  bool set_up() {
    ifreq ifr = named();
    if (!ctl(SIOCGIFFLAGS, ifr)) return false;
    ifr.ifr_flags |= IFF_UP;
    return ctl(SIOCSIFFLAGS, ifr);
  }

  Clock::time_point created{}, mac_set{};

 private:
  ifreq named() const {
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name_.c_str(), IFNAMSIZ - 1);
    return ifr;
  }
  static bool ctl(unsigned long req, ifreq& ifr) {
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return false;
    bool ok = ::ioctl(s, req, &ifr) == 0;
    ::close(s);
    return ok;
  }

  std::string name_;
  int fd_ = -1;
  bool ok_ = true;
};

}  // namespace zw::test
