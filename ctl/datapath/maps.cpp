// Pinned map access and bpffs housekeeping.
#include "datapath/maps.h"

#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>

#include "util/log.h"

namespace zw::datapath {

namespace {
Result<UniqueFd> open_pin(const std::string& path) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    int e = errno;
    return fail(
        Error(e == ENOENT ? ErrorKind::kNotFound : ErrorKind::kSystem, "open pinned " + path, e));
  }
  return UniqueFd(fd);
}
}  // namespace

Result<Maps> open_pinned_maps(const std::string& pin_dir) {
  Maps m;
  UniqueFd* slots[] = {&m.config,    &m.endpoints, &m.addrs,    &m.cidrs,     &m.policy,
                       &m.ct,        &m.st_reason, &m.st_rule,  &m.st_ep,     &m.pairs,
                       &m.ct_count,  &m.zpairs,    &m.st_zpair, &m.events,    &m.ev_bucket,
                       &m.st_ev,     &m.zp_index,  &m.zp_claim,  &m.zp_alloc,  &m.ct_born};
  static_assert(std::size(kMapNames) == std::size(slots));
  for (size_t i = 0; i < std::size(slots); ++i) {
    auto fd = open_pin(pin_dir + "/" + kMapNames[i]);
    if (!fd) return fail(std::move(fd.error()));
    *slots[i] = std::move(*fd);
  }
  return m;
}

Status ensure_bpffs(const std::string& pin_dir) {
  const std::string root = "/sys/fs/bpf";
  struct statfs st {};
  if (statfs(root.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC) return {};
  if (pin_dir.rfind(root + "/", 0) != 0) {
    // A pin dir elsewhere must already be on bpffs.
    std::string parent = std::filesystem::path(pin_dir).parent_path();
    if (statfs(parent.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC) return {};
    return fail(Error(ErrorKind::kSystem, parent + " is not on a bpf filesystem"));
  }
  ::mkdir(root.c_str(), 0700);
  if (::mount("bpf", root.c_str(), "bpf", 0, "mode=0700") != 0)
    return fail(Error::sys("mount -t bpf bpf " + root));
  // Under `ip netns exec` /sys is remounted privately: a bpffs mounted here
  // dies with this process and takes the pins with it (enforcement stays,
  // but status/down cannot find it). Say so instead of failing later.
  log::warn("mounted bpffs at " + root +
            "; if this runs in a private mount namespace (ip netns exec), pins vanish when it "
            "exits: use nsenter --net=... instead");
  return {};
}

bool map_has_batch_ops(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return false;
  return info.type == BPF_MAP_TYPE_HASH || info.type == BPF_MAP_TYPE_PERCPU_HASH ||
         info.type == BPF_MAP_TYPE_LRU_HASH || info.type == BPF_MAP_TYPE_ARRAY;
}

bool lookup_endpoint(int fd, uint32_t gen, uint32_t ifindex, zw_endpoint* out) {
  zw_endpoint_val v{};
  if (!map_lookup(fd, zw_endpoint_key{ifindex}, &v)) return false;
  *out = v.slot[ZW_SLOT(gen)];
  return out->zone != ZW_ZONE_NONE;
}

bool lookup_addr(int fd, uint32_t gen, const uint8_t addr[16], zw_addr_info* out) {
  zw_addr_key k{};
  std::memcpy(k.addr, addr, 16);
  zw_addr_val v{};
  if (!map_lookup(fd, k, &v)) return false;
  *out = v.slot[ZW_SLOT(gen)];
  return out->zone != ZW_ZONE_NONE;
}

bool lookup_cidr(int fd, uint32_t gen, const uint8_t addr[16], zw_addr_info* out) {
  zw_cidr_key k{.prefixlen = 128, .addr = {}};
  std::memcpy(k.addr, addr, 16);
  zw_addr_val v{};
  if (!map_lookup(fd, k, &v)) return false;
  *out = v.slot[ZW_SLOT(gen)];
  return out->zone != ZW_ZONE_NONE;
}

bool lookup_policy(int fd, uint32_t gen, const zw_policy_key& k, zw_verdict* out) {
  zw_policy_val v{};
  if (!map_lookup(fd, k, &v)) return false;
  *out = v.slot[ZW_SLOT(gen)];
  return out->rule_id != ZW_RULE_NONE;
}

int possible_cpus() {
  static const int n = libbpf_num_possible_cpus();
  return n > 0 ? n : 1;
}

Result<MappedArray> MappedArray::map(int fd, size_t bytes, const char* what) {
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t len = (bytes + page - 1) / page * page;
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return fail(Error::sys(std::string("mmap ") + what));
  return MappedArray(p, len);
}

MappedArray::MappedArray(MappedArray&& o) noexcept : p_(o.p_), len_(o.len_) { o.p_ = nullptr; }

MappedArray::~MappedArray() {
  if (p_) munmap(p_, len_);
}

Result<ConfigView> ConfigView::map(int config_fd) {
  auto m = MappedArray::map(config_fd, sizeof(zw_config), "zw_config");
  if (!m) return fail(std::move(m.error()));
  return ConfigView(std::move(*m));
}

uint32_t ConfigView::active_gen() const {
  return std::atomic_ref<uint32_t>(cfg_->active_gen).load(std::memory_order_acquire);
}

void ConfigView::set_defaults(uint32_t gen, const zw_verdict& intra, const zw_verdict& inter) {
  cfg_->dflt[gen & 1][0] = intra;
  cfg_->dflt[gen & 1][1] = inter;
}

void ConfigView::set_active_gen(uint32_t gen) {
  std::atomic_ref<uint32_t>(cfg_->active_gen).store(gen, std::memory_order_release);
}

void ConfigView::bump_ct_epoch() {
  std::atomic_ref<uint32_t>(cfg_->ct_epoch).fetch_add(1, std::memory_order_seq_cst);
}

Result<CtUsageView> CtUsageView::map(int fd) {
  auto m = MappedArray::map(fd, sizeof(zw_ct_usage) * ZW_MAX_ENDPOINTS, "zw_ct_count");
  if (!m) return fail(std::move(m.error()));
  return CtUsageView(std::move(*m));
}

uint32_t CtUsageView::flows(uint32_t id) const {
  if (id >= ZW_MAX_ENDPOINTS) return 0;
  return std::atomic_ref<uint32_t>(u_[id].flows).load(std::memory_order_relaxed);
}

void CtUsageView::uncharge(uint32_t id) {
  if (id >= ZW_MAX_ENDPOINTS) return;
  std::atomic_ref<uint32_t> n(u_[id].flows);
  // Never below zero: a count cannot go negative even if a charge was lost.
  uint32_t cur = n.load(std::memory_order_relaxed);
  while (cur != 0 && !n.compare_exchange_weak(cur, cur - 1, std::memory_order_relaxed)) {
  }
}

Result<CtBucketsView> CtBucketsView::map(int fd) {
  auto m = MappedArray::map(fd, sizeof(uint64_t) * ZW_CT_BORN_SLOTS, "zw_ct_born");
  if (!m) return fail(std::move(m.error()));
  return CtBucketsView(std::move(*m));
}

uint32_t CtBucketsView::slot_of(const zw_ct_key& k) {
  uint64_t w[4];
  std::memcpy(w, k.saddr, 16);
  std::memcpy(w + 2, k.daddr, 16);
  return zw_born_slot(w[0], w[1], w[2], w[3], k.sport, k.dport, k.proto);
}

uint64_t CtBucketsView::word(uint32_t slot) const {
  if (slot >= ZW_CT_BORN_SLOTS) return 0;
  return std::atomic_ref<uint64_t>(w_[slot]).load(std::memory_order_seq_cst);
}

void CtBucketsView::released(const zw_ct_key& k) {
  std::atomic_ref<uint64_t> w(w_[slot_of(k)]);
  // The live half only, never below zero: a lost count costs the datapath a
  // lookup, a count too low would hide a flow.
  uint64_t cur = w.load(std::memory_order_relaxed);
  while (zw_ctb_live(cur) != 0 && !w.compare_exchange_weak(cur, cur - 1, std::memory_order_seq_cst)) {
  }
}

bool ct_forget(int ct_fd, CtUsageView& usage, CtBucketsView& buckets, const zw_ct_key& k,
               const zw_ct_entry& e) {
  if (bpf_map_delete_elem(ct_fd, &k) != 0) return false;
  buckets.released(k);
  if (e.flags & ZW_CTF_OWNED) usage.uncharge(e.owner);
  return true;
}

void ConfigView::set_event_rate(uint32_t per_second, uint32_t burst) {
  std::atomic_ref<uint32_t>(cfg_->ev_rate).store(per_second, std::memory_order_relaxed);
  std::atomic_ref<uint32_t>(cfg_->ev_burst).store(burst, std::memory_order_relaxed);
}

}  // namespace zw::datapath
