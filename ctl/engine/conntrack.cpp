// Conntrack sweep and per-endpoint usage.
#include "engine/conntrack.h"

#include <vector>

#include "util/clock.h"

namespace zw::engine {

namespace dp = zw::datapath;

Result<SweepReport> sweep_conntrack(const dp::Maps& maps, uint64_t now_ns) {
  if (now_ns == 0) now_ns = monotonic_ns();
  auto usage = dp::CtUsageView::map(maps.ct_count.get());
  if (!usage) return fail(std::move(usage.error()).wrap("conntrack sweep"));
  auto buckets = dp::CtBucketsView::map(maps.ct_born.get());
  if (!buckets) return fail(std::move(buckets.error()).wrap("conntrack sweep"));
  SweepReport rep;
  // Batched reads: a full table is a million entries.
  constexpr uint32_t kBatch = 4096;
  std::vector<zw_ct_key> keys(kBatch);
  std::vector<zw_ct_entry> vals(kBatch);
  std::vector<std::pair<zw_ct_key, zw_ct_entry>> expired;
  zw_ct_key out_batch{};
  bool first = true;
  for (;;) {
    uint32_t count = kBatch;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    int err = bpf_map_lookup_batch(maps.ct.get(), first ? nullptr : &out_batch, &out_batch,
                                   keys.data(), vals.data(), &count, &opts);
    int e = err ? errno : 0;
    if (err && e != ENOENT) return fail(Error::sys("conntrack sweep: lookup batch"));
    first = false;
    for (uint32_t i = 0; i < count; ++i) {
      ++rep.scanned;
      const zw_ct_entry& v = vals[i];
      if (now_ns > v.last_seen_ns && now_ns - v.last_seen_ns > zw_ct_timeout_ns(keys[i].proto, v.flags))
        expired.emplace_back(keys[i], v);
    }
    if (e == ENOENT) break;
  }
  for (const auto& [k, v] : expired) {
    // Still idle? A packet may have refreshed it since the batch was read.
    zw_ct_entry now{};
    if (!dp::map_lookup(maps.ct.get(), k, &now) || now.last_seen_ns != v.last_seen_ns) continue;
    if (!dp::ct_forget(maps.ct.get(), *usage, *buckets, k, now)) continue;  // the datapath won
    ++rep.expired;
  }
  // The flow cache may hold answers for what was just deleted (when the
  // clock is ahead of the datapath's; the flows of a real sweep are idle).
  if (rep.expired > 0) {
    auto cfg = dp::ConfigView::map(maps.config.get());
    if (!cfg) return fail(std::move(cfg.error()).wrap("conntrack sweep"));
    cfg->bump_ct_epoch();
  }
  return rep;
}

Result<std::map<uint32_t, uint32_t>> conntrack_usage(const dp::Maps& maps) {
  auto usage = dp::CtUsageView::map(maps.ct_count.get());
  if (!usage) return fail(std::move(usage.error()));
  std::map<uint32_t, uint32_t> out;
  for (uint32_t id = 0; id < ZW_MAX_ENDPOINTS; ++id)
    if (uint32_t n = usage->flows(id)) out[id] = n;
  return out;
}

}  // namespace zw::engine
