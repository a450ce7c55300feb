// Traffic tools for the packet-rate and latency benchmarks.
//   blast      generator, runs --seconds and exits: AF_PACKET sendmmsg with
//              PACKET_QDISC_BYPASS (BPF_PROG_TEST_RUN live frames would be
//              faster, but this kernel refuses them: EPERM as root), or
//              --tap: one write() per frame into a persistent tap, as QEMU
//              without vhost writes a guest's frames
//   xdp-drop   attach (or --detach) the trivial XDP drop program on --dev
//   rr-server  TCP echo of fixed-size requests
//   rr-client  request/response round trips; prints latency percentiles
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include <bpf/libbpf.h>

#include "common.h"
#include "util/net.h"

namespace zw::bench {

namespace {

using Clock = std::chrono::steady_clock;

// AF_PACKET: the frame sent over and over with sendmmsg, bypassing the qdisc
// (what trafgen does, in a process that stops by itself).
int packet_blast(uint32_t ifindex, const test::Bytes& f, double seconds) {
  int s = socket(AF_PACKET, SOCK_RAW, 0);
  if (s < 0) {
    std::perror("blast: socket(AF_PACKET)");
    return 1;
  }
  int one = 1;
  setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
  sockaddr_ll ll{};
  ll.sll_family = AF_PACKET;
  ll.sll_ifindex = static_cast<int>(ifindex);
  ll.sll_halen = 6;
  std::memcpy(ll.sll_addr, f.data(), 6);
  constexpr int kBatch = 256;
  std::vector<iovec> iov(kBatch);
  std::vector<mmsghdr> msgs(kBatch);
  for (int i = 0; i < kBatch; ++i) {
    iov[i] = {const_cast<uint8_t*>(f.data()), f.size()};
    msgs[i].msg_hdr.msg_name = &ll;
    msgs[i].msg_hdr.msg_namelen = sizeof ll;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  uint64_t sent = 0;
  auto t0 = Clock::now();
  auto until = t0 + std::chrono::duration<double>(seconds);
  while (Clock::now() < until) {
    int n = sendmmsg(s, msgs.data(), kBatch, 0);
    if (n > 0) sent += static_cast<uint64_t>(n);
  }
  double el = std::chrono::duration<double>(Clock::now() - t0).count();
  close(s);
  std::printf("sent %llu frames of %zu bytes in %.3f s: %.0f pps\n",
              static_cast<unsigned long long>(sent), f.size(), el, sent / el);
  return 0;
}

// A tap, fed the way QEMU's virtio-net without vhost feeds it: one write()
// of one frame from the "guest" side of a persistent tap. tun processes each
// frame in the writer's context (XDP on the raw buffer before any skb, then
// the stack), so the writer's CPU carries the frame's whole cost on the host.
int tap_blast(const std::string& dev, const test::Bytes& f, double seconds) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    std::perror("blast: open /dev/net/tun");
    return 1;
  }
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", dev.c_str());
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
    std::perror("blast: TUNSETIFF (a persistent tap of that name must exist)");
    close(fd);
    return 1;
  }
  uint64_t sent = 0;
  auto t0 = Clock::now();
  auto until = t0 + std::chrono::duration<double>(seconds);
  while (Clock::now() < until)
    for (int i = 0; i < 256; ++i)
      if (write(fd, f.data(), f.size()) == static_cast<ssize_t>(f.size())) ++sent;
  double el = std::chrono::duration<double>(Clock::now() - t0).count();
  close(fd);
  std::printf("sent %llu frames of %zu bytes in %.3f s: %.0f pps\n",
              static_cast<unsigned long long>(sent), f.size(), el, sent / el);
  return 0;
}

int blast(int argc, char** argv) {
  CLI::App app{"AF_PACKET or tap generator"};
  std::string dev, src, dst, src_mac, dst_mac;
  int sport = 4000, dport = 9, size = 64;
  double seconds = 2;
  app.add_option("--dev", dev)->required();
  app.add_option("--src", src)->required();
  app.add_option("--dst", dst)->required();
  app.add_option("--src-mac", src_mac)->required();
  app.add_option("--dst-mac", dst_mac)->required();
  app.add_option("--sport", sport)->capture_default_str();
  app.add_option("--dport", dport)->capture_default_str();
  app.add_option("--size", size, "frame bytes without FCS")->capture_default_str();
  app.add_option("--seconds", seconds)->capture_default_str();
  bool tap = false;
  app.add_flag("--tap", tap, "--dev is a persistent tap: write frames into it as a VM would");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  uint32_t ifindex = if_nametoindex(dev.c_str());
  if (!ifindex) {
    std::fprintf(stderr, "blast: no interface %s\n", dev.c_str());
    return 1;
  }
  test::Bytes f = udp_frame(src, dst, static_cast<uint16_t>(sport), static_cast<uint16_t>(dport),
                            src_mac, static_cast<size_t>(size));
  auto mac = net::parse_mac(dst_mac);
  if (!mac) {
    std::fprintf(stderr, "blast: bad --dst-mac\n");
    return 2;
  }
  std::memcpy(f.data(), mac->data(), 6);
  return tap ? tap_blast(dev, f, seconds) : packet_blast(ifindex, f, seconds);
}

int xdp_drop(int argc, char** argv) {
  CLI::App app{"attach the trivial XDP drop"};
  std::string dev;
  bool detach = false;
  app.add_option("--dev", dev)->required();
  app.add_flag("--detach", detach);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  int ifindex = static_cast<int>(if_nametoindex(dev.c_str()));
  if (!ifindex) {
    std::fprintf(stderr, "xdp-drop: no interface %s\n", dev.c_str());
    return 1;
  }
  if (detach) return bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, nullptr) == 0 ? 0 : 1;
  auto ref = Reference::load();
  if (!ref) {
    std::fprintf(stderr, "xdp-drop: %s\n", ref.error().str().c_str());
    return 1;
  }
  // A netlink attachment: stays after this process exits, until --detach.
  if (bpf_xdp_attach(ifindex, ref->xdp_drop(), XDP_FLAGS_DRV_MODE, nullptr) != 0) {
    std::perror("xdp-drop: bpf_xdp_attach");
    return 1;
  }
  return 0;
}

bool full_io(int fd, char* buf, size_t n, bool writing) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = writing ? write(fd, buf + done, n - done) : read(fd, buf + done, n - done);
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

int rr_server(int argc, char** argv) {
  CLI::App app{"TCP request/response server"};
  int port = 7001, size = 64;
  app.add_option("--port", port)->capture_default_str();
  app.add_option("--size", size)->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(ls, 8) != 0) {
    std::perror("rr-server: bind/listen");
    return 1;
  }
  std::vector<char> buf(static_cast<size_t>(size));
  for (;;) {
    int c = accept(ls, nullptr, nullptr);
    if (c < 0) continue;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    while (full_io(c, buf.data(), buf.size(), false) && full_io(c, buf.data(), buf.size(), true)) {
    }
    close(c);
  }
}

int rr_client(int argc, char** argv) {
  CLI::App app{"TCP request/response latency"};
  std::string host;
  int port = 7001, size = 64;
  double seconds = 3;
  app.add_option("--host", host)->required();
  app.add_option("--port", port)->capture_default_str();
  app.add_option("--size", size)->capture_default_str();
  app.add_option("--seconds", seconds)->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("rr-client: connect");
    return 1;
  }
  std::vector<char> buf(static_cast<size_t>(size), 'x');
  std::vector<double> us;
  auto t0 = Clock::now();
  auto until = t0 + std::chrono::duration<double>(seconds);
  for (auto now = t0; now < until;) {
    if (!full_io(s, buf.data(), buf.size(), true) || !full_io(s, buf.data(), buf.size(), false)) {
      std::fprintf(stderr, "rr-client: connection lost\n");
      return 1;
    }
    auto t = Clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t - now).count());
    now = t;
  }
  close(s);
  double el = std::chrono::duration<double>(Clock::now() - t0).count();
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) { return us[std::min(us.size() - 1, size_t(p * us.size()))]; };
  std::printf("transactions %zu rate %.0f/s p50_us %.1f p90_us %.1f p99_us %.1f p999_us %.1f\n",
              us.size(), us.size() / el, pct(0.5), pct(0.9), pct(0.99), pct(0.999));
  return 0;
}

}  // namespace

int run_traffic(int argc, char** argv) {
  std::string cmd = argv[1];
  if (cmd == "blast") return blast(argc - 1, argv + 1);
  if (cmd == "xdp-drop") return xdp_drop(argc - 1, argv + 1);
  if (cmd == "rr-server") return rr_server(argc - 1, argv + 1);
  return rr_client(argc - 1, argv + 1);
}

}  // namespace zw::bench
