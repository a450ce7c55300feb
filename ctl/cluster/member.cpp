// The daemon's side of the cluster: watch -> view -> remote endpoints and
// policy revisions; applies -> publisher.
#include "cluster/member.h"

#include "cluster/admin.h"
#include "util/log.h"

namespace zw::cluster {

using nlohmann::json;

Result<std::unique_ptr<Member>> Member::start(Options o) {
  if (auto st = check_segment(o.host, "cluster host"); !st) return fail(std::move(st.error()));
  auto pfx = normalize_prefix(o.prefix);
  if (!pfx) return fail(std::move(pfx.error()));
  o.prefix = *pfx;
  std::unique_ptr<Member> m(new Member(std::move(o)));
  Layout l{m->o_.prefix};
  auto w = Watcher::start_range(m->o_.endpoints, l.watch_from(), l.watch_end(), m->o_.timeouts);
  if (!w) return fail(std::move(w.error()));
  m->watch_ = std::move(*w);
  auto p = Publisher::start({.endpoints = m->o_.endpoints,
                             .layout = l,
                             .host = m->o_.host,
                             .lease_ttl = m->o_.lease_ttl,
                             .timeouts = m->o_.timeouts});
  if (!p) return fail(std::move(p.error()));
  m->pub_ = std::move(*p);
  m->since_ = now_rfc3339();
  return m;
}

View::Changed Member::on_watch() {
  View::Changed all;
  for (const auto& ev : watch_->drain()) {
    if (ev.kind == WatchEvent::Kind::kReset) {
      if (ev.compacted)
        log::warn("cluster: watched history compacted; resynced from a full read",
                  {{"revision", std::to_string(ev.revision)}});
      synced_ = true;
    }
    auto c = view_.apply(ev);
    all.policy = all.policy || c.policy;
    all.endpoints = all.endpoints || c.endpoints;
  }
  return all;
}

bool Member::on_publisher() {
  pub_->clear_fd();
  // The watch may sit on a silent connection while the keepalive already
  // found etcd gone: have it reconnect (it resumes where it was).
  if (!pub_->connected()) watch_->reconnect();
  return true;
}

std::optional<Result<policy::Policy>> Member::take_policy() {
  const auto& p = view_.policy();
  if (!p || p->revision <= offered_revision_) return std::nullopt;
  offered_revision_ = p->revision;
  auto loaded = materialize(p->record.files, o_.policy_dir);
  if (!loaded) {
    log::error("cluster policy revision cannot be loaded here; the enforced one stays",
               {{"revision", std::to_string(p->revision)}, {"error", loaded.error().str()}});
    return std::optional<Result<policy::Policy>>(fail(
        std::move(loaded.error()).wrap("cluster policy revision " + std::to_string(p->revision))));
  }
  loaded_revision_ = p->revision;
  loaded_digest_ = p->record.digest;
  log::info("cluster policy revision loaded", {{"revision", std::to_string(p->revision)},
                                               {"digest", p->record.digest.substr(0, 12)},
                                               {"applied_by", p->record.applied_by}});
  return std::optional<Result<policy::Policy>>(std::move(*loaded));
}

std::vector<std::string> Member::add_remote(const policy::Policy& p, inventory::Inventory& inv) {
  auto r = view_.remote_endpoints(inv);
  sanitize_remote(p, r.endpoints, r.warnings);
  remote_vms_ = r.vms;
  for (auto& e : r.endpoints) inv.endpoints.push_back(std::move(e));
  return std::move(r.warnings);
}

HostRecord Member::host_record(int64_t revision) {
  if (revision != enforced_revision_) {
    enforced_revision_ = revision;
    since_ = now_rfc3339();
  }
  return HostRecord{.host = o_.host,
                    .policy_revision = revision,
                    .policy_digest = revision == loaded_revision_ ? loaded_digest_ : "",
                    .local_endpoints = static_cast<int64_t>(local_vms_),
                    .remote_endpoints = static_cast<int64_t>(remote_vms_),
                    .etcd = "connected",
                    .since = since_,
                    .version = std::string("zonewall ") + ZW_VERSION};
}

void Member::enforced(const inventory::Inventory& local, int64_t revision) {
  applied_etcd_revision_ = view_.revision();
  auto recs = records_of(local, o_.host, now_rfc3339());
  local_vms_ = recs.size();
  // The time field changes on every call: compare without it, so an apply
  // that changed nothing here writes nothing to etcd.
  auto same = [](const std::vector<EndpointRecord>& a, const std::vector<EndpointRecord>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      auto x = a[i], y = b[i];
      x.time = y.time = "";
      if (to_json(x) != to_json(y)) return false;
    }
    return true;
  };
  if (have_local_ && same(recs, last_local_)) recs = last_local_;
  last_local_ = recs;
  have_local_ = true;
  pub_->publish(std::move(recs), host_record(revision));
}

void Member::announce() { pub_->publish(std::nullopt, host_record(0)); }

bool Member::connected() const { return pub_->connected() && watch_->connected(); }

json Member::status() const {
  return {{"host", o_.host},
          {"endpoints", o_.endpoints},
          {"prefix", o_.prefix},
          {"etcd", connected() ? "connected" : "disconnected"},
          {"synced", synced_},
          {"policy_revision", enforced_revision_},
          {"policy_revision_stored", view_.policy() ? view_.policy()->revision : 0},
          {"remote_endpoints", remote_vms_},
          {"remote_records", view_.remote_records()},
          {"local_endpoints", local_vms_},
          {"etcd_revision", applied_etcd_revision_},
          {"watch_compactions", watch_->compactions()}};
}

}  // namespace zw::cluster
