// The publisher thread: lease keepalive and this host's records.
#include "cluster/publisher.h"

#include <sys/eventfd.h>

#include <chrono>

#include "util/log.h"

namespace zw::cluster {

Result<std::unique_ptr<Publisher>> Publisher::start(Options o) {
  if (o.lease_ttl < 3) return fail(Error::invalid("cluster lease TTL below 3 s"));
  auto c = Client::make(o.endpoints, o.timeouts);  // validates the endpoints
  if (!c) return fail(std::move(c.error()));
  std::unique_ptr<Publisher> p(new Publisher(std::move(o)));
  p->evfd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!p->evfd_) return fail(Error::sys("eventfd"));
  p->thread_ = std::thread([raw = p.get()] { raw->loop(); });
  return p;
}

Publisher::~Publisher() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Publisher::publish(std::optional<std::vector<EndpointRecord>> endpoints, HostRecord host) {
  {
    std::lock_guard lk(mu_);
    if (endpoints) {
      std::map<std::string, std::string> m;
      for (const auto& r : *endpoints) m[o_.layout.endpoint(o_.host, r.id())] = to_json(r);
      want_eps_ = std::move(m);
    }
    want_host_ = {o_.layout.host(o_.host), to_json(host)};
    dirty_ = true;
  }
  cv_.notify_all();
}

void Publisher::clear_fd() {
  uint64_t n;
  (void)!::read(evfd_.get(), &n, sizeof n);
}

void Publisher::set_connected(bool v) {
  if (connected_.exchange(v) == v) return;
  uint64_t one = 1;
  (void)!::write(evfd_.get(), &one, sizeof one);
}

bool Publisher::round(Client& c) {
  if (lease_ != 0) {
    auto ttl = c.lease_keepalive(lease_);
    if (!ttl) {
      if (ttl.error().kind() != ErrorKind::kNotFound) {
        log::debug("cluster keepalive failed", {{"error", ttl.error().str()}});
        return false;
      }
      log::warn("cluster lease expired; publishing again under a new one",
                {{"lease", std::to_string(lease_)}});
      lease_ = 0;
    }
  }
  if (lease_ == 0) {
    auto id = c.lease_grant(o_.lease_ttl);
    if (!id) {
      log::debug("cluster lease grant failed", {{"error", id.error().str()}});
      return false;
    }
    lease_ = *id;
    written_.clear();  // everything goes again, under the new lease
    cleaned_ = false;
    log::info("cluster lease granted",
              {{"lease", std::to_string(lease_)}, {"ttl", std::to_string(o_.lease_ttl)}});
  }
  std::optional<std::map<std::string, std::string>> eps;
  std::optional<std::pair<std::string, std::string>> host;
  {
    std::lock_guard lk(mu_);
    eps = want_eps_;
    host = want_host_;
    dirty_ = false;
  }
  if (eps) {
    if (!cleaned_) {
      // Records of VMs that left while no daemon of ours was connected.
      auto old = c.range(o_.layout.endpoints_of(o_.host), true);
      if (!old) return false;
      for (const auto& kv : old->kvs)
        if (!eps->count(kv.key)) {
          if (!c.del(kv.key)) return false;
          log::info("cluster: stale record removed", {{"key", kv.key}});
        }
      cleaned_ = true;
    }
    for (auto it = written_.begin(); it != written_.end();) {
      if (it->first.starts_with(o_.layout.endpoints()) && !eps->count(it->first)) {
        if (!c.del(it->first)) return false;
        it = written_.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& [k, v] : *eps) {
      auto w = written_.find(k);
      if (w != written_.end() && w->second == v) continue;
      if (!c.put(k, v, lease_)) return false;
      written_[k] = v;
    }
  }
  if (host) {
    auto w = written_.find(host->first);
    if (w == written_.end() || w->second != host->second) {
      if (!c.put(host->first, host->second, lease_)) return false;
      written_[host->first] = host->second;
    }
  }
  rounds_.fetch_add(1);
  return true;
}

void Publisher::loop() {
  auto c = Client::make(o_.endpoints, o_.timeouts);
  if (!c) return;
  auto keepalive = std::chrono::milliseconds(o_.lease_ttl * 1000 / 3);
  auto next = std::chrono::steady_clock::now();
  bool logged_down = false;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      cv_.wait_until(lk, next, [&] { return stop_ || dirty_; });
      if (stop_) return;
      // Nothing to say yet: no lease either (a host record comes first).
      if (!want_host_) {
        next = std::chrono::steady_clock::now() + keepalive;
        continue;
      }
    }
    bool ok = round(*c);
    set_connected(ok);
    if (!ok && !logged_down) {
      log::warn("cluster: etcd unreachable; enforcement stays as it is (fail static), retrying",
                {{"host", o_.host}});
      logged_down = true;
    } else if (ok && logged_down) {
      log::info("cluster: etcd reachable again; records republished", {{"host", o_.host}});
      logged_down = false;
    }
    // Retry soon after a failure; a keepalive well inside the TTL otherwise.
    next = std::chrono::steady_clock::now() + (ok ? keepalive : std::chrono::milliseconds(500));
  }
}

}  // namespace zw::cluster
