// Prometheus text format (version 0.0.4) over cpp-httplib.
#include "daemon/metrics.h"

#include <httplib.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace zw::daemon {

using nlohmann::json;

namespace {

std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// The shortest text that reads back as the same double (1.8e-06, not
// 1.7999999999999999e-06).
std::string num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string num(const json& v) {
  if (v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) return num(v.get<double>());
  if (v.is_boolean()) return v.get<bool>() ? "1" : "0";
  return "0";
}

using Labels = std::vector<std::pair<std::string, std::string>>;

class Writer {
 public:
  // Starts a metric family.
  void family(const std::string& name, const char* type, const char* help) {
    out_ << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
  }
  void sample(const std::string& name, const Labels& labels, const std::string& value) {
    out_ << name;
    if (!labels.empty()) {
      out_ << "{";
      for (size_t i = 0; i < labels.size(); ++i)
        out_ << (i ? "," : "") << labels[i].first << "=\"" << escape(labels[i].second) << "\"";
      out_ << "}";
    }
    out_ << " " << value << "\n";
  }
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
};

std::string str_or(const json& v, const char* dflt = "") {
  return v.is_string() ? v.get<std::string>() : dflt;
}

}  // namespace

std::string render_metrics(const json& stats, const json& status, const ApplyInfo& apply) {
  Writer w;
  // Packets and bytes by reason: the datapath's single exit.
  for (const char* what : {"packets", "bytes"}) {
    std::string name = std::string("zonewall_reason_") + what + "_total";
    w.family(name, "counter",
             (std::string(what) + " by the reason they left the datapath").c_str());
    for (const auto& [reason, c] : stats["reasons"].items())
      w.sample(name, {{"reason", reason}}, num(c[what]));
  }
  for (const char* what : {"packets", "bytes"}) {
    std::string name = std::string("zonewall_rule_") + what + "_total";
    w.family(name, "counter", (std::string(what) + " decided by each rule").c_str());
    for (const auto& r : stats["rules"])
      w.sample(name, {{"rule", str_or(r["name"])}, {"action", str_or(r["action"])}}, num(r[what]));
  }
  w.family("zonewall_rule_audit_packets_total", "counter",
           "packets each rule would have dropped but passed (rule or zone in audit mode)");
  for (const auto& r : stats["rules"])
    w.sample("zonewall_rule_audit_packets_total", {{"rule", str_or(r["name"])}},
             num(r.value("audit_packets", json(0))));
  for (const char* what : {"packets", "bytes"}) {
    std::string name = std::string("zonewall_zone_pair_") + what + "_total";
    w.family(
        name, "counter",
        (std::string(what) + " per zone pair of the flow (replies count on their flow)").c_str());
    for (const auto& z : stats["zone_pairs"])
      for (const char* verdict : {"pass", "drop", "audit"})
        w.sample(name,
                 {{"src_zone", str_or(z["src_zone"])},
                  {"dst_zone", str_or(z["dst_zone"])},
                  {"verdict", verdict}},
                 num(z[verdict][what]));
  }
  // Per-interface series: endpoints of a VM that is not running have no
  // interface (and would all be {vm, interface=""}: duplicate series).
  std::vector<json> interfaces;
  for (const auto& e : stats["endpoints"])
    if (!str_or(e["ifname"]).empty()) interfaces.push_back(e);
  for (const char* what : {"packets", "bytes"}) {
    std::string name = std::string("zonewall_interface_") + what + "_total";
    w.family(name, "counter", (std::string(what) + " per VM interface and direction").c_str());
    for (const auto& e : interfaces)
      for (const auto& [key, dir, verdict] :
           {std::tuple{"from_vm_pass", "from_vm", "pass"},
            std::tuple{"from_vm_drop", "from_vm", "drop"},
            std::tuple{"to_vm_pass", "to_vm", "pass"}, std::tuple{"to_vm_drop", "to_vm", "drop"}})
        w.sample(name,
                 {{"vm", str_or(e["vm"])},
                  {"interface", str_or(e["ifname"])},
                  {"zone", str_or(e["zone"])},
                  {"direction", dir},
                  {"verdict", verdict}},
                 num(e[key][what]));
  }
  w.family("zonewall_events_total", "counter",
           "flow/deny events: emitted to the ring buffer, suppressed by the per-interface rate "
           "limit, lost to a full ring buffer");
  for (const auto& e : interfaces)
    for (const char* outcome : {"emitted", "suppressed", "lost"})
      w.sample("zonewall_events_total",
               {{"vm", str_or(e["vm"])}, {"interface", str_or(e["ifname"])}, {"outcome", outcome}},
               num(e["events"][outcome]));
  for (const char* outcome : {"emitted", "suppressed", "lost"})
    w.sample("zonewall_events_total", {{"vm", ""}, {"interface", ""}, {"outcome", outcome}},
             num(stats["events"]["unowned"][outcome]));

  const json& cpu = stats["cpu"];
  w.family("zonewall_bpf_stats_enabled", "gauge",
           "1 while the kernel times BPF program runs (BPF_ENABLE_STATS or the sysctl)");
  w.sample("zonewall_bpf_stats_enabled", {}, num(cpu["stats_enabled"]));
  w.family("zonewall_datapath_cpu_seconds_total", "counter",
           "CPU time the datapath programs ran while statistics were enabled (kernel run_time_ns)");
  for (const auto& p : cpu["programs"])
    w.sample("zonewall_datapath_cpu_seconds_total", {{"program", str_or(p["program"])}},
             num(p["run_time_ns"].get<double>() / 1e9));
  w.family("zonewall_datapath_runs_total", "counter",
           "program runs timed while statistics were enabled (kernel run_cnt)");
  for (const auto& p : cpu["programs"])
    w.sample("zonewall_datapath_runs_total", {{"program", str_or(p["program"])}},
             num(p["run_count"]));
  w.family("zonewall_interface_cpu_seconds_estimated", "gauge",
           "estimated datapath CPU per VM interface: its packets times its hooks' average cost "
           "per packet");
  for (const auto& e : interfaces)
    w.sample("zonewall_interface_cpu_seconds_estimated",
             {{"vm", str_or(e["vm"])}, {"interface", str_or(e["ifname"])}},
             num(e["cpu_seconds_estimated"]));

  w.family("zonewall_policy_generation", "gauge", "the live policy generation");
  w.sample("zonewall_policy_generation", {}, num(stats["active_generation"]));
  w.family("zonewall_conntrack_entries", "gauge", "tracked flows");
  w.sample("zonewall_conntrack_entries", {}, num(stats["conntrack_entries"]));
  w.family("zonewall_endpoints", "gauge", "VM interfaces in the applied state");
  w.sample("zonewall_endpoints", {}, num(json(status["endpoints"].size())));
  w.family("zonewall_endpoints_enforced", "gauge",
           "VM interfaces with both hooks attached and their endpoint live");
  w.sample("zonewall_endpoints_enforced", {}, num(status["endpoints_enforced"]));
  w.family("zonewall_applies_total", "counter", "reconciles that wrote a policy generation");
  w.sample("zonewall_applies_total", {}, std::to_string(apply.applies));
  w.family("zonewall_last_apply_duration_seconds", "gauge", "duration of the last apply");
  w.sample("zonewall_last_apply_duration_seconds", {}, num(apply.last_duration_seconds));
  w.family("zonewall_last_apply_timestamp_seconds", "gauge",
           "when the last apply finished (Unix time)");
  w.sample("zonewall_last_apply_timestamp_seconds", {}, num(apply.last_unix_seconds));
  if (apply.libvirt) {
    w.family("zonewall_libvirt_reads_total", "counter",
             "domains the reconciles read from libvirt: all of them at once, or one an event named");
    w.sample("zonewall_libvirt_reads_total", {{"kind", "all"}},
             std::to_string(apply.libvirt_full_reads));
    w.sample("zonewall_libvirt_reads_total", {{"kind", "domain"}},
             std::to_string(apply.libvirt_domains_reread));
  }
  if (const json& c = apply.cluster; c.is_object()) {
    auto flag = [&](const char* name, const char* help, bool v) {
      w.family(name, "gauge", help);
      w.sample(name, {}, v ? "1" : "0");
    };
    flag("zonewall_cluster_etcd_connected", "1 while this host reaches etcd (else fail static)",
         c.value("etcd", "") == "connected");
    flag("zonewall_cluster_synced", "1 once the first full read of the cluster store arrived",
         c.value("synced", false));
    w.family("zonewall_cluster_policy_revision", "gauge",
             "cluster policy revision: enforced here, and stored in etcd as last seen");
    w.sample("zonewall_cluster_policy_revision", {{"which", "enforced"}},
             num(c.value("policy_revision", json(0))));
    w.sample("zonewall_cluster_policy_revision", {{"which", "stored"}},
             num(c.value("policy_revision_stored", json(0))));
    w.family("zonewall_cluster_endpoints", "gauge",
             "VMs published by this host (local) and zoned from other hosts' records (remote)");
    w.sample("zonewall_cluster_endpoints", {{"where", "local"}},
             num(c.value("local_endpoints", json(0))));
    w.sample("zonewall_cluster_endpoints", {{"where", "remote"}},
             num(c.value("remote_endpoints", json(0))));
  }
  return w.str();
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& listen,
                                                            Render render) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos)
    return fail(Error::invalid("--metrics: expected ADDRESS:PORT, got '" + listen + "'"));
  std::string host = listen.substr(0, colon);
  std::string port_s = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  int port = 0;
  try {
    size_t used = 0;
    port = std::stoi(port_s, &used);
    if (used != port_s.size() || port < 0 || port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    return fail(Error::invalid("--metrics: bad port in '" + listen + "'"));
  }
  std::unique_ptr<MetricsServer> m(new MetricsServer());
  m->svr_ = std::make_unique<httplib::Server>();
  m->svr_->Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
    auto text = render();
    if (!text) {
      res.status = 500;
      res.set_content(text.error().str() + "\n", "text/plain");
      return;
    }
    res.set_content(*text, "text/plain; version=0.0.4; charset=utf-8");
  });
  m->svr_->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("zonewall: metrics at /metrics\n", "text/plain");
  });
  if (port == 0) {
    m->port_ = m->svr_->bind_to_any_port(host);
    if (m->port_ < 0) return fail(Error(ErrorKind::kSystem, "--metrics: cannot bind " + listen));
  } else {
    if (!m->svr_->bind_to_port(host, port))
      return fail(Error(ErrorKind::kSystem, "--metrics: cannot bind " + listen));
    m->port_ = port;
  }
  m->thread_ = std::thread([s = m->svr_.get()] { s->listen_after_bind(); });
  return m;
}

MetricsServer::~MetricsServer() {
  if (svr_) svr_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace zw::daemon
