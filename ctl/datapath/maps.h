// Typed access to the pinned BPF maps: open by pin path, update, delete,
// iterate, per-CPU sums, and the mmap'd config whose active_gen flips with
// one atomic store. Every libbpf map call of the control plane lives here.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "util/fd.h"
#include "util/result.h"
#include "zonewall/abi/zonewall.h"

namespace zw::datapath {

// Names of the maps as pinned under the pin directory (= their BPF names).
inline constexpr const char* kMapNames[] = {
    "zw_config",    "zw_endpoints", "zw_addrs",    "zw_cidrs",  "zw_policy",    "zw_ct",
    "zw_st_reason", "zw_st_rule",   "zw_st_ep",    "zw_pairs",  "zw_ct_count",  "zw_zpairs",
    "zw_st_zpair",  "zw_events",    "zw_ev_bucket", "zw_st_ev",  "zw_zp_index",  "zw_zp_claim", "zw_zp_alloc",
    "zw_ct_born",
};

struct Maps {
  UniqueFd config, endpoints, addrs, cidrs, policy, ct, st_reason, st_rule, st_ep, pairs, ct_count,
      zpairs;
  UniqueFd st_zpair, events, ev_bucket, st_ev, zp_index, zp_claim, zp_alloc, ct_born;
};

// Opens the maps pinned under pin_dir (kNotFound if nothing is pinned).
Result<Maps> open_pinned_maps(const std::string& pin_dir);

// Makes sure bpffs is mounted where pin_dir lives (mounts /sys/fs/bpf).
Status ensure_bpffs(const std::string& pin_dir);

int possible_cpus();

template <typename K>
concept MapKey = std::has_unique_object_representations_v<K>;

template <MapKey K, typename V>
Status map_update(int fd, const K& k, const V& v, uint64_t flags = BPF_ANY) {
  if (bpf_map_update_elem(fd, &k, &v, flags) != 0) return fail(Error::sys("bpf_map_update_elem"));
  return {};
}

template <MapKey K>
Status map_delete(int fd, const K& k) {
  if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT)
    return fail(Error::sys("bpf_map_delete_elem"));
  return {};
}

template <MapKey K, typename V>
bool map_lookup(int fd, const K& k, V* v) {
  return bpf_map_lookup_elem(fd, &k, v) == 0;
}

// Every key of a hash/LPM map (snapshot; concurrent changes may be missed).
template <MapKey K>
Result<std::vector<K>> map_keys(int fd) {
  std::vector<K> out;
  K cur{};
  K next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    out.push_back(next);
    cur = next;
    prev = &cur;
  }
  if (errno != ENOENT) return fail(Error::sys("bpf_map_get_next_key"));
  return out;
}

// Every entry of a map: batched lookups where the map type has them (hash),
// a key walk otherwise (LPM). A snapshot: concurrent changes may be missed.
bool map_has_batch_ops(int fd);  // hash maps yes; the LPM trie no

template <MapKey K, typename V>
Result<std::vector<std::pair<K, V>>> map_entries(int fd) {
  std::vector<std::pair<K, V>> out;
  if (!map_has_batch_ops(fd)) {
    auto ks = map_keys<K>(fd);
    if (!ks) return fail(std::move(ks.error()));
    out.reserve(ks->size());
    for (const K& k : *ks) {
      V v{};
      if (bpf_map_lookup_elem(fd, &k, &v) == 0) out.emplace_back(k, v);
    }
    return out;
  }
  std::vector<K> keys;
  std::vector<V> vals;
  uint64_t token = 0;
  uint32_t chunk = 4096;
  bool first = true;
  for (;;) {
    size_t n = keys.size();
    keys.resize(n + chunk);
    vals.resize(n + chunk);
    uint32_t count = chunk;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    int rc = bpf_map_lookup_batch(fd, first ? nullptr : &token, &token, keys.data() + n,
                                  vals.data() + n, &count, &opts);
    int e = rc ? errno : 0;
    if (rc != 0 && e != ENOENT) count = 0;  // only a completed or final batch counts
    keys.resize(n + std::min(count, chunk));
    vals.resize(keys.size());
    if (rc == 0) {
      first = false;
      continue;
    }
    if (e == ENOENT) break;                   // done
    if (e == ENOSPC && chunk < (1u << 20)) {  // one bucket holds more than a chunk
      chunk *= 2;
      continue;
    }
    errno = e;
    return fail(Error::sys("bpf_map_lookup_batch"));
  }
  out.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) out.emplace_back(keys[i], vals[i]);
  return out;
}

// Writes keys[i] -> vals[i] with as few syscalls as the map type allows
// (BPF_MAP_UPDATE_BATCH; one update per entry where it has none).
template <MapKey K, typename V>
Status map_update_many(int fd, const std::vector<K>& keys, const std::vector<V>& vals) {
  if (keys.empty()) return {};
  if (map_has_batch_ops(fd)) {
    uint32_t count = static_cast<uint32_t>(keys.size());
    LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
    if (bpf_map_update_batch(fd, keys.data(), vals.data(), &count, &opts) != 0)
      return fail(Error::sys("bpf_map_update_batch"));
    return {};
  }
  for (size_t i = 0; i < keys.size(); ++i)
    if (auto st = map_update(fd, keys[i], vals[i]); !st) return st;
  return {};
}

// Deletes keys (absent ones are not an error).
template <MapKey K>
Status map_delete_many(int fd, const std::vector<K>& keys) {
  size_t done = 0;
  if (map_has_batch_ops(fd)) {
    while (done < keys.size()) {
      uint32_t count = static_cast<uint32_t>(keys.size() - done);
      LIBBPF_OPTS(bpf_map_batch_opts, opts);
      if (bpf_map_delete_batch(fd, keys.data() + done, &count, &opts) == 0) return {};
      if (errno != ENOENT) return fail(Error::sys("bpf_map_delete_batch"));
      done += std::min<size_t>(count, keys.size() - done) + 1;  // keys[done] was gone already
    }
    return {};
  }
  for (const K& k : keys)
    if (auto st = map_delete(fd, k); !st) return st;
  return {};
}

// Two-slot maps (ABI header): the slot generation `gen` reads, as the
// datapath does; false when the key is absent or its slot is.
bool lookup_endpoint(int fd, uint32_t gen, uint32_t ifindex, zw_endpoint* out);
bool lookup_addr(int fd, uint32_t gen, const uint8_t addr[16], zw_addr_info* out);
// Longest-prefix match of a full address in zw_cidrs.
bool lookup_cidr(int fd, uint32_t gen, const uint8_t addr[16], zw_addr_info* out);
bool lookup_policy(int fd, uint32_t gen, const zw_policy_key& k, zw_verdict* out);

// Per-CPU array element summed over CPUs with `add(acc, one)`.
template <typename V, typename Add>
Result<V> percpu_sum(int fd, uint32_t key, Add add) {
  std::vector<V> per(possible_cpus());
  if (bpf_map_lookup_elem(fd, &key, per.data()) != 0)
    return fail(Error::sys("bpf_map_lookup_elem percpu"));
  V acc{};
  for (const V& v : per) add(acc, v);
  return acc;
}

// A BPF_F_MMAPABLE array map mapped into this process (whole pages),
// unmapped on destruction: what the views below share.
class MappedArray {
 public:
  static Result<MappedArray> map(int fd, size_t bytes, const char* what);
  MappedArray(MappedArray&& o) noexcept;
  MappedArray& operator=(MappedArray&&) = delete;
  ~MappedArray();
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  MappedArray(void* p, size_t len) : p_(p), len_(len) {}
  void* p_;
  size_t len_;
};

// The config array, mmap'd (BPF_F_MMAPABLE): reading and flipping the
// active generation never tears.
class ConfigView {
 public:
  static Result<ConfigView> map(int config_fd);

  uint32_t active_gen() const;
  void set_active_gen(uint32_t gen);
  // The defaults' verdicts of generation `gen` (its parity slot), before
  // its flip; the flip's release store publishes them.
  void set_defaults(uint32_t gen, const zw_verdict& intra, const zw_verdict& inter);
  // Event rate limit per endpoint (events/s, bucket depth); 0 = default.
  void set_event_rate(uint32_t per_second, uint32_t burst);
  // After deleting flows: the datapath's cached established answers of
  // the epoch before are not used (zw_config.ct_epoch).
  void bump_ct_epoch();

 private:
  explicit ConfigView(MappedArray m) : m_(std::move(m)), cfg_(m_.as<zw_config>()) {}
  MappedArray m_;
  zw_config* cfg_;
};

// zw_ct_count, mmap'd (BPF_F_MMAPABLE): flows charged to each endpoint id.
// The controller only reads and uncharges (after a delete it won).
class CtUsageView {
 public:
  static Result<CtUsageView> map(int ct_count_fd);

  uint32_t flows(uint32_t endpoint_id) const;
  void uncharge(uint32_t endpoint_id);

 private:
  explicit CtUsageView(MappedArray m) : m_(std::move(m)), u_(m_.as<zw_ct_usage>()) {}
  MappedArray m_;
  zw_ct_usage* u_;
};

// zw_ct_born, mmap'd (BPF_F_MMAPABLE): per tuple bucket, flows created and
// flows live (the ABI header). The controller never creates flows: it only
// takes one off a bucket's live flows after a delete of that flow it won.
class CtBucketsView {
 public:
  static Result<CtBucketsView> map(int ct_born_fd);
  static uint32_t slot_of(const zw_ct_key& k);

  uint64_t word(uint32_t slot) const;
  // After a successful delete of k's flow; never below zero.
  void released(const zw_ct_key& k);

 private:
  explicit CtBucketsView(MappedArray m) : m_(std::move(m)), w_(m_.as<uint64_t>()) {}
  MappedArray m_;
  uint64_t* w_;
};

// Deletes a flow from user space the way the datapath does: the entry,
// then its owner's charge and its bucket's live count, each only if this
// delete is the one that removed it. False if it was not there (the
// datapath or another deleter won).
bool ct_forget(int ct_fd, CtUsageView& usage, CtBucketsView& buckets, const zw_ct_key& k,
               const zw_ct_entry& e);

}  // namespace zw::datapath
