// Skeleton lifecycle, pinning, and libbpf's log routed through ours.
#include "datapath/object.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <mutex>

#include <bpf/bpf.h>

#include "datapath/maps.h"
#include "util/fd.h"
#include "util/log.h"
#include "zonewall_bpf.skel.h"

namespace zw::datapath {

namespace {
std::string g_libbpf_warnings;
std::mutex g_log_mu;

int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) {
  char buf[4096];
  int n = std::vsnprintf(buf, sizeof buf, fmt, args);
  std::string line(buf, n > 0 ? std::min<size_t>(n, sizeof buf - 1) : 0);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  if (level == LIBBPF_WARN) {
    std::lock_guard lk(g_log_mu);
    if (g_libbpf_warnings.size() < (1u << 20)) g_libbpf_warnings += line + "\n";
  }
  // Quieter than libbpf's own levels: its warnings include expected
  // conditions (an existing clsact qdisc), and the ones that matter travel
  // in the error of the failed load that caused them.
  log::debug("libbpf", {{"detail", line}});
  return n;
}

std::string take_warnings() {
  std::lock_guard lk(g_log_mu);
  return std::exchange(g_libbpf_warnings, {});
}

bpf_program* prog_of(zonewall_bpf* s, Prog p) {
  switch (p) {
    case Prog::kFromVmXdp:
      return s->progs.zw_from_vm_xdp;
    case Prog::kFromVmTc:
      return s->progs.zw_from_vm_tc;
    case Prog::kToVmTc:
      return s->progs.zw_to_vm_tc;
  }
  return nullptr;
}

constexpr Prog kAllProgs[] = {Prog::kFromVmXdp, Prog::kFromVmTc, Prog::kToVmTc};
}  // namespace

const char* prog_name(Prog p) {
  switch (p) {
    case Prog::kFromVmXdp:
      return "zw_from_vm_xdp";
    case Prog::kFromVmTc:
      return "zw_from_vm_tc";
    case Prog::kToVmTc:
      return "zw_to_vm_tc";
  }
  return "?";
}

void SkelDeleter::operator()(zonewall_bpf* s) const { zonewall_bpf__destroy(s); }

void install_libbpf_logger() { libbpf_set_print(libbpf_print); }

namespace {

// A map pinned by another build whose layout differs from this build's
// cannot be reused (libbpf would fail with "parameter mismatch"): say which
// and what to do, before anything is loaded.
Status check_pinned_layout(bpf_map* const* maps, size_t n, const std::string& pin_dir) {
  std::string bad;
  for (size_t i = 0; i < n; ++i) {
    std::string path = pin_dir + "/" + kMapNames[i];
    UniqueFd fd(bpf_obj_get(path.c_str()));
    if (!fd) continue;  // not pinned yet: created by this load
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) continue;
    const bpf_map* m = maps[i];
    auto want = [&](const char* what, uint64_t pinned, uint64_t ours) {
      if (pinned == ours) return;
      bad += "\n  " + std::string(kMapNames[i]) + ": " + what + " " + std::to_string(pinned) +
             " pinned, " + std::to_string(ours) + " in this build";
    };
    want("type", info.type, bpf_map__type(m));
    want("key size", info.key_size, bpf_map__key_size(m));
    want("value size", info.value_size, bpf_map__value_size(m));
    want("max entries", info.max_entries, bpf_map__max_entries(m));
    want("flags", info.map_flags, bpf_map__map_flags(m));
  }
  if (bad.empty()) return {};
  return fail(Error::invalid(
      "the maps pinned at " + pin_dir +
      " were made by a zonewall build with another datapath layout; nothing was changed and the "
      "programs attached now keep enforcing:" +
      bad +
      "\nTo move to this build: `zonewall down` (traffic is unfiltered until "
      "the next apply; conntrack and counters start afresh), then apply or start the daemon"));
}

}  // namespace

Result<Object> Object::load(const std::string& pin_dir, const LoadOptions& opts) {
  if (opts.create_maps || opts.pin_progs)
    if (auto st = ensure_bpffs(pin_dir); !st) return fail(std::move(st.error()));
  std::error_code ec;
  if (opts.create_maps) {
    std::filesystem::create_directories(pin_dir, ec);
    if (ec) return fail(Error(ErrorKind::kSystem, "create " + pin_dir, ec.value()));
  }
  if (opts.create_maps || opts.pin_progs)
    for (const char* sub : {"/progs", "/links"}) {
      std::filesystem::create_directories(pin_dir + sub, ec);
      if (ec) return fail(Error(ErrorKind::kSystem, "create " + pin_dir + sub, ec.value()));
    }

  Object obj(zonewall_bpf__open());
  if (!obj.skel_) return fail(Error::sys("open BPF skeleton"));
  bpf_map* maps[] = {
      obj.skel_->maps.zw_config,    obj.skel_->maps.zw_endpoints, obj.skel_->maps.zw_addrs,
      obj.skel_->maps.zw_cidrs,     obj.skel_->maps.zw_policy,    obj.skel_->maps.zw_ct,
      obj.skel_->maps.zw_st_reason, obj.skel_->maps.zw_st_rule,   obj.skel_->maps.zw_st_ep,
      obj.skel_->maps.zw_pairs,     obj.skel_->maps.zw_ct_count,  obj.skel_->maps.zw_zpairs,
      obj.skel_->maps.zw_st_zpair,  obj.skel_->maps.zw_events,    obj.skel_->maps.zw_ev_bucket,
      obj.skel_->maps.zw_st_ev,     obj.skel_->maps.zw_zp_index,  obj.skel_->maps.zw_zp_claim,
      obj.skel_->maps.zw_zp_alloc,  obj.skel_->maps.zw_ct_born};
  static_assert(std::size(maps) == std::size(kMapNames));
  if (auto st = check_pinned_layout(maps, std::size(maps), pin_dir); !st)
    return fail(std::move(st.error()));
  obj.created_maps_ = true;
  for (size_t i = 0; i < std::size(maps); ++i) {
    std::string path = pin_dir + "/" + kMapNames[i];
    if (std::filesystem::exists(path, ec)) obj.created_maps_ = false;
    if (!opts.create_maps && !std::filesystem::exists(path, ec))
      return fail(Error(ErrorKind::kNotFound,
                        "no zonewall maps pinned at " + path + " (nothing applied?)", ENOENT));
    if (bpf_map__set_pin_path(maps[i], path.c_str()) != 0)
      return fail(Error::sys("set pin path " + path));
  }
  obj.skel_->rodata->zw_cfg_run_mode = opts.run_mode;
  take_warnings();
  if (int err = zonewall_bpf__load(obj.skel_.get()); err != 0) {
    std::string log = take_warnings();
    return fail(
        Error(ErrorKind::kSystem, "load BPF programs (libbpf/verifier log follows)\n" + log, -err));
  }
  if (opts.pin_progs)
    if (auto st = obj.pin_programs(pin_dir); !st) return fail(std::move(st.error()));
  return obj;
}

Status Object::pin_programs(const std::string& pin_dir) const {
  for (Prog p : kAllProgs) {
    std::string path = pin_dir + "/progs/" + prog_name(p);
    ::unlink(path.c_str());
    if (bpf_program__pin(prog_of(skel_.get(), p), path.c_str()) != 0)
      return fail(Error::sys("pin " + path));
  }
  return {};
}

void Object::unpin_created(const std::string& pin_dir) const {
  if (!created_maps_) return;
  for (const char* name : kMapNames) ::unlink((pin_dir + "/" + name).c_str());
  for (Prog p : kAllProgs) ::unlink((pin_dir + "/progs/" + prog_name(p)).c_str());
  for (const char* sub : {"/progs", "/links", ""}) ::rmdir((pin_dir + sub).c_str());
}

int Object::prog_fd(Prog p) const { return bpf_program__fd(prog_of(skel_.get(), p)); }

Result<Maps> Object::maps() const {
  auto dup = [](bpf_map* m) { return UniqueFd(fcntl(bpf_map__fd(m), F_DUPFD_CLOEXEC, 3)); };
  Maps m;
  m.config = dup(skel_->maps.zw_config);
  m.endpoints = dup(skel_->maps.zw_endpoints);
  m.addrs = dup(skel_->maps.zw_addrs);
  m.cidrs = dup(skel_->maps.zw_cidrs);
  m.policy = dup(skel_->maps.zw_policy);
  m.ct = dup(skel_->maps.zw_ct);
  m.st_reason = dup(skel_->maps.zw_st_reason);
  m.st_rule = dup(skel_->maps.zw_st_rule);
  m.st_ep = dup(skel_->maps.zw_st_ep);
  m.pairs = dup(skel_->maps.zw_pairs);
  m.ct_count = dup(skel_->maps.zw_ct_count);
  m.zpairs = dup(skel_->maps.zw_zpairs);
  m.st_zpair = dup(skel_->maps.zw_st_zpair);
  m.events = dup(skel_->maps.zw_events);
  m.ev_bucket = dup(skel_->maps.zw_ev_bucket);
  m.st_ev = dup(skel_->maps.zw_st_ev);
  m.zp_index = dup(skel_->maps.zw_zp_index);
  m.zp_claim = dup(skel_->maps.zw_zp_claim);
  m.zp_alloc = dup(skel_->maps.zw_zp_alloc);
  m.ct_born = dup(skel_->maps.zw_ct_born);
  if (!m.config || !m.endpoints || !m.addrs || !m.cidrs || !m.policy || !m.ct || !m.st_reason ||
      !m.st_rule || !m.st_ep || !m.pairs || !m.ct_count || !m.zpairs || !m.st_zpair || !m.events ||
      !m.ev_bucket || !m.st_ev || !m.zp_index || !m.zp_claim || !m.zp_alloc || !m.ct_born)
    return fail(Error::sys("dup map fd"));
  return m;
}

Result<UniqueFd> open_pinned_prog(const std::string& pin_dir, Prog p) {
  std::string path = pin_dir + "/progs/" + prog_name(p);
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    int e = errno;
    return fail(Error(e == ENOENT ? ErrorKind::kNotFound : ErrorKind::kSystem, "open " + path, e));
  }
  return UniqueFd(fd);
}

}  // namespace zw::datapath
