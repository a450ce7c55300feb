// tc and XDP attachment through libbpf 1.1 (no tcx: clsact filters).
#include "datapath/attach.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "util/fd.h"

namespace zw::datapath {

namespace {
bpf_tc_attach_point point(TcHook h) {
  return h == TcHook::kIngress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
}
const char* hook_name(TcHook h) { return h == TcHook::kIngress ? "ingress" : "egress"; }
std::string where(int ifindex, TcHook h) {
  return std::string("tc ") + hook_name(h) + " ifindex " + std::to_string(ifindex);
}
}  // namespace

Result<bool> ensure_clsact(int ifindex) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
  int err = bpf_tc_hook_create(&hook);
  if (err == -EEXIST) return false;
  if (err)
    return fail(
        Error(ErrorKind::kSystem, "create clsact on ifindex " + std::to_string(ifindex), -err));
  return true;
}

Status attach_tc(int ifindex, TcHook h, int prog_fd) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point(h));
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE, .handle = kTcHandle,
              .priority = kTcPriority);
  if (int err = bpf_tc_attach(&hook, &opts); err)
    return fail(Error(ErrorKind::kSystem, "attach " + where(ifindex, h), -err));
  return {};
}

Status detach_tc(int ifindex, TcHook h) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point(h));
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
  int err = bpf_tc_detach(&hook, &opts);
  if (err && err != -ENOENT && err != -ENODEV && err != -EINVAL)
    return fail(Error(ErrorKind::kSystem, "detach " + where(ifindex, h), -err));
  return {};
}

Result<uint32_t> tc_prog_id(int ifindex, TcHook h) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point(h));
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
  int err = bpf_tc_query(&hook, &opts);
  if (err == -ENOENT || err == -ENODEV || err == -EINVAL) return 0u;
  if (err) return fail(Error(ErrorKind::kSystem, "query " + where(ifindex, h), -err));
  return opts.prog_id;
}

Status destroy_clsact(int ifindex) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
              .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  int err = bpf_tc_hook_destroy(&hook);
  if (err && err != -ENOENT && err != -ENODEV && err != -EINVAL)
    return fail(
        Error(ErrorKind::kSystem, "remove clsact on ifindex " + std::to_string(ifindex), -err));
  return {};
}

Status attach_xdp(int ifindex, int prog_fd, const std::string& link_pin) {
  UniqueFd existing(bpf_obj_get(link_pin.c_str()));
  if (existing) {
    auto info = xdp_link_info(link_pin);
    if (info && info->ifindex == static_cast<uint32_t>(ifindex)) {
      if (bpf_link_update(existing.get(), prog_fd, nullptr) != 0)
        return fail(Error::sys("update XDP link " + link_pin));
      return {};
    }
    // Defunct (interface gone) or moved: replace the pin.
    ::unlink(link_pin.c_str());
  }
  UniqueFd link(bpf_link_create(prog_fd, ifindex, BPF_XDP, nullptr));
  if (!link) return fail(Error::sys("attach XDP to ifindex " + std::to_string(ifindex)));
  if (bpf_obj_pin(link.get(), link_pin.c_str()) != 0) return fail(Error::sys("pin " + link_pin));
  return {};
}

Status detach_xdp(const std::string& link_pin) {
  UniqueFd link(bpf_obj_get(link_pin.c_str()));
  if (!link) return {};
  bpf_link_detach(link.get());  // defunct links refuse; the unlink below frees them
  if (::unlink(link_pin.c_str()) != 0 && errno != ENOENT)
    return fail(Error::sys("unlink " + link_pin));
  return {};
}

Result<XdpLinkInfo> xdp_link_info(const std::string& link_pin) {
  UniqueFd link(bpf_obj_get(link_pin.c_str()));
  if (!link) return XdpLinkInfo{};
  bpf_link_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(link.get(), &info, &len) != 0)
    return fail(Error::sys("link info " + link_pin));
  return XdpLinkInfo{info.prog_id, info.xdp.ifindex};
}

uint32_t prog_id_of_fd(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) return 0;
  return info.id;
}

uint32_t map_id_of_fd(int map_fd) {
  bpf_map_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(map_fd, &info, &len) != 0) return 0;
  return info.id;
}

bool prog_uses_map(uint32_t prog_id, uint32_t map_id) {
  UniqueFd fd(bpf_prog_get_fd_by_id(prog_id));
  if (!fd) return false;
  uint32_t ids[64] = {};
  bpf_prog_info info{};
  info.nr_map_ids = 64;
  info.map_ids = reinterpret_cast<uint64_t>(ids);
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return false;
  for (uint32_t i = 0; i < std::min<uint32_t>(info.nr_map_ids, 64); ++i)
    if (ids[i] == map_id) return true;
  return false;
}

}  // namespace zw::datapath
