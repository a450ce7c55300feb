// Subcommands: check, apply, status, stats, down, trace, test, plan (each with --json).
#include "cli/cli.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <variant>

#include "cli/docs.h"
#include "cluster/admin.h"
#include "cluster/etcd.h"
#include "config/config.h"
#include "daemon/control.h"
#include "daemon/daemon.h"
#include "datapath/events.h"
#include "datapath/maps.h"
#include "datapath/object.h"
#include "engine/desired.h"
#include "engine/expect.h"
#include "engine/flows.h"
#include "engine/inspect.h"
#include "engine/plan.h"
#include "engine/reconcile.h"
#include "engine/state.h"
#include "engine/trace.h"
#include "inventory/gather.h"
#include "inventory/zones.h"
#include "policy/compile.h"
#include "policy/json.h"
#include "util/log.h"
#include "util/text.h"

namespace zw::cli {

using nlohmann::json;

namespace {

struct Globals {
  std::string pin_dir = "/sys/fs/bpf/zonewall";
  std::string state_dir;
  std::string config_path = config::kDefaultPath;
  bool json_out = false;
  int verbose = 0;
};

int exit_for(const Error& e) {
  switch (e.kind()) {
    case ErrorKind::kInvalid:
      return kInvalid;
    case ErrorKind::kBusy:
      return kBusy;
    case ErrorKind::kNotFound:
      return kNotFound;
    case ErrorKind::kSystem:
      return kSystemError;
  }
  return kSystemError;
}

// Names in text output (VM names from libvirt, interface names from the
// kernel, zone and rule names): never raw control bytes on a terminal.
std::string txt(const json& v) {
  return text::printable(v.is_string() ? v.get_ref<const std::string&>() : v.dump());
}
std::string txt(const std::string& v) { return text::printable(v); }

// Prints an error (stderr, or a JSON object on stdout with --json) and
// returns the matching exit status.
int report(const Globals& g, const Error& e) {
  // Messages quote names from files, libvirt and the kernel.
  std::string msg = text::printable_lines(e.str());
  if (g.json_out) {
    json errs = json::array();
    size_t pos = 0;
    while (pos <= msg.size()) {
      size_t nl = msg.find('\n', pos);
      std::string line = msg.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      if (!line.empty()) errs.push_back(line);
      if (nl == std::string::npos) break;
      pos = nl + 1;
    }
    std::cout << json{{"ok", false}, {"exit", exit_for(e)}, {"errors", errs}}.dump(2) << "\n";
  } else {
    std::cerr << "zonewall: error: " << msg << "\n";
  }
  return exit_for(e);
}

void print_json(const json& j) { std::cout << j.dump(2) << "\n"; }

int cmd_check(const Globals& g, const std::string& policy_path, const std::string& inv_path,
              const std::string& libvirt) {
  auto p = policy::load(policy_path);
  if (!p) return report(g, p.error());
  auto ids = policy::assign_zone_ids(*p);
  auto rule_ids = policy::assign_rule_ids(*p);
  if (!rule_ids) return report(g, rule_ids.error());
  ids.rule = *rule_ids;
  auto compiled = policy::compile(*p, ids);
  if (!compiled) return report(g, compiled.error());
  json assigned = json::array();
  if (!inv_path.empty() || !libvirt.empty()) {
    auto inv = inventory::gather(libvirt, inv_path);
    if (!inv) return report(g, inv.error());
    for (const auto& w : inv->warnings) log::warn(w);
    auto a = inventory::assign_zones(*p, inv->inventory);
    if (!a) return report(g, a.error());
    // Everything apply checks before writing (address conflicts, map
    // capacities), so check is a faithful CI gate. Interfaces are not
    // looked up: check runs anywhere.
    auto d = engine::build_desired(*p, inv->inventory, std::nullopt, "tc",
                                   [](const std::string&) -> uint32_t { return 1; });
    if (!d) return report(g, d.error());
    for (const auto& e : *a)
      assigned.push_back(
          {{"vm", e.endpoint.vm_name}, {"ifname", e.endpoint.ifname}, {"zone", e.zone}});
  } else {
    // Without an inventory the policy's own capacities (CIDRs, zone pairs,
    // entries) are still checked as apply would.
    auto d = engine::build_desired(*p, inventory::Inventory{}, std::nullopt, "tc",
                                   [](const std::string&) -> uint32_t { return 1; });
    if (!d) return report(g, d.error());
  }
  if (g.json_out) {
    json j{{"ok", true},
           {"files", p->files},
           {"zones", p->zones.size()},
           {"rules", p->rules.size()},
           {"policy_entries", compiled->entries.size()}};
    if (!inv_path.empty() || !libvirt.empty()) j["endpoints"] = assigned;
    print_json(j);
  } else {
    std::cout << "ok: " << policy_path << ": " << p->zones.size() << " zones, " << p->rules.size()
              << " rules, " << compiled->entries.size() << " datapath entries\n";
    for (const auto& e : assigned)
      std::cout << "  " << txt(e["vm"]) << " (" << txt(e["ifname"]) << ") -> zone "
                << txt(e["zone"]) << "\n";
  }
  return kOk;
}

void print_apply(const Globals& g, const json& r) {
  if (g.json_out) {
    print_json(r);
    return;
  }
  std::cout << "applied generation " << r["generation"] << " (was " << r["previous_generation"]
            << "): " << r["policy_entries"] << " policy entries, " << r["attached"] << "/"
            << r["endpoints"] << " interfaces enforced";
  if (r["detached"].get<size_t>()) std::cout << ", " << r["detached"] << " detached";
  std::cout << "; map entries written " << r.value("entries_written", size_t{0}) << ", deleted "
            << r.value("entries_deleted", size_t{0});
  if (r.value("via", "") == "daemon") std::cout << " (through the running daemon)";
  std::cout << "\n";
  for (const auto& w : r["warnings"]) std::cout << "warning: " << txt(w) << "\n";
}

std::string absolute(const std::string& p) {
  if (p.empty() || p.find("://") != std::string::npos) return p;
  std::error_code ec;
  auto a = std::filesystem::absolute(p, ec);
  return ec ? p : a.string();
}

// A refused or failed daemon response as the CLI's error and exit status.
int report_response(const Globals& g, const json& resp) {
  int exit = resp.value("exit", 1);
  std::string msg;
  for (const auto& e : resp.value("errors", json::array()))
    msg += (msg.empty() ? "" : "\n") + e.get<std::string>();
  if (exit == daemon::kExitDenied) {
    report(g, Error(ErrorKind::kSystem, msg));
    return kDenied;
  }
  return report(g, Error(exit == 3 ? ErrorKind::kInvalid : ErrorKind::kSystem, msg));
}

// A read-only request to the running daemon: its result, nullopt when no
// daemon runs (the caller then reads pins and state itself), or an exit
// status already reported.
std::variant<json, std::nullopt_t, int> ask_daemon(const Globals& g, const engine::Paths& paths,
                                                   const std::string& cmd) {
  auto r = daemon::call(daemon::control_socket_path(paths.state_dir), {{"cmd", cmd}},
                        std::chrono::seconds(30));
  if (!r) return report(g, r.error());
  if (!*r) return std::nullopt;
  if (!(*r)->value("ok", false)) return report_response(g, **r);
  return (**r)["result"];
}

// A running daemon owns the datapath: hand it the policy instead.
std::optional<int> apply_via_daemon(const Globals& g, const engine::Paths& paths,
                                    const std::string& policy_path, const std::string& inv_path) {
  json req{{"cmd", "apply"}, {"policy", absolute(policy_path)}};
  if (!inv_path.empty()) req["inventory"] = absolute(inv_path);
  auto r =
      daemon::call(daemon::control_socket_path(paths.state_dir), req, std::chrono::seconds(60));
  if (!r) return report(g, r.error());
  if (!*r) return std::nullopt;
  const json& resp = **r;
  if (!resp.value("ok", false)) return report_response(g, resp);
  print_apply(g, resp);
  return kOk;
}

int cmd_apply(const Globals& g, const std::string& policy_path, const std::string& inv_path,
              const std::string& libvirt, const std::string& attach) {
  auto p = policy::load(policy_path);
  if (!p) return report(g, p.error());
  auto paths = engine::make_paths(g.pin_dir, g.state_dir);
  if (auto via = apply_via_daemon(g, paths, policy_path, inv_path)) return *via;
  if (inv_path.empty() && libvirt.empty())
    return report(
        g,
        Error::invalid("apply: give --inventory FILE and/or --libvirt URI (no daemon is running)"));
  if (auto st = datapath::ensure_bpffs(paths.pin_dir); !st) return report(g, st.error());
  auto lock = engine::PinLock::acquire(paths.pin_dir);
  if (!lock) return report(g, lock.error());
  // The programs load (verifier) while the inventory is read and the
  // desired state is built; a failure before the flip unpins what a first
  // load created.
  auto programs = engine::ProgramLoad::start(paths);
  auto inv = inventory::gather(libvirt, inv_path);
  if (!inv) {
    programs.reset();
    ::rmdir(paths.pin_dir.c_str());
    return report(g, inv.error());
  }
  engine::ApplyInput in{.policy = &*p,
                        .inventory = &inv->inventory,
                        .preload = programs.get(),
                        .policy_source = absolute(policy_path),
                        .inventory_source = inv->source,
                        .default_attach = attach,
                        .keep_hooked = {}};
  auto rep = engine::apply(paths, in);
  if (!rep) {
    programs.reset();
    ::rmdir(paths.pin_dir.c_str());  // a refused first apply leaves no empty pin dir
    return report(g, rep.error());
  }
  for (const auto& w : inv->warnings) rep->warnings.push_back(w);
  for (const auto& w : rep->warnings) log::warn(w);
  print_apply(g, {{"ok", true},
                  {"generation", rep->generation},
                  {"previous_generation", rep->previous_generation},
                  {"policy_entries", rep->policy_entries},
                  {"endpoints", rep->endpoints},
                  {"attached", rep->attached},
                  {"detached", rep->detached},
                  {"entries_written", rep->entries_written},
                  {"entries_deleted", rep->entries_deleted},
                  {"warnings", rep->warnings}});
  return kOk;
}

std::string join(const json& arr) {
  std::string out;
  for (const auto& s : arr) out += (out.empty() ? "" : ",") + s.get<std::string>();
  return out;
}

// Through the daemon when one runs (the only way for an unprivileged member
// of the read group), otherwise from the pins and state directly.
// Returns the result, or an exit status already reported.
std::variant<json, int> read_only(const Globals& g, const std::string& cmd) {
  auto paths = engine::make_paths(g.pin_dir, g.state_dir);
  auto via = ask_daemon(g, paths, cmd);
  if (auto* j = std::get_if<json>(&via)) return std::move(*j);
  if (auto* rc = std::get_if<int>(&via)) return *rc;
  auto r = cmd == "status" ? engine::status(paths) : engine::stats(paths);
  if (!r) return report(g, r.error());
  return std::move(*r);
}

int cmd_status(const Globals& g) {
  auto got = read_only(g, "status");
  if (auto* rc = std::get_if<int>(&got)) return *rc;
  const json& s = std::get<json>(got);
  if (g.json_out) {
    print_json(s);
    return kOk;
  }
  std::printf("generation %u  policy %s  applied %s\n", s["active_generation"].get<uint32_t>(),
              txt(s["policy"]).c_str(), txt(s["applied_at"]).c_str());
  std::printf("%zu policy entries, %zu tracked flows, %zu/%zu interfaces enforced\n\n",
              s["policy_entries"].get<size_t>(), s["conntrack_entries"].get<size_t>(),
              s["endpoints_enforced"].get<size_t>(), s["endpoints"].size());
  std::printf("%-16s %-10s %-15s %-5s %-9s %s\n", "VM", "ZONE", "INTERFACE", "HOOK", "STATE",
              "ADDRESSES");
  for (const auto& e : s["endpoints"]) {
    const char* state = e["enforced"].get<bool>() ? "enforced"
                        : e["ifname"].get<std::string>().empty()
                            ? (s.contains("cluster") ? "elsewhere" : "stopped")
                        : !e["present"].get<bool>() ? "absent"
                                                    : "NOT-ENFORCED";
    std::printf("%-16s %-10s %-15s %-5s %-9s %s\n", txt(e["vm"]).c_str(), txt(e["zone"]).c_str(),
                txt(e["ifname"]).c_str(), txt(e["attach"]).c_str(), state,
                txt(join(e["addrs"])).c_str());
  }
  for (const auto& u : s["hooked_unclaimed"])
    std::printf("%-16s %-10s %-15s %-5s %-9s %s\n", "-", "-", txt(u["ifname"]).c_str(), "tc",
                "dropping", "(no VM claims it: fail closed)");
  if (s.contains("cluster")) {
    const json& c = s["cluster"];
    std::printf(
        "\ncluster: host %s, etcd %s, policy revision %ld enforced (%ld stored), "
        "%zu local VMs, %zu remote VMs\n",
        txt(c["host"]).c_str(), txt(c["etcd"]).c_str(), c["policy_revision"].get<long>(),
        c["policy_revision_stored"].get<long>(), c["local_endpoints"].get<size_t>(),
        c["remote_endpoints"].get<size_t>());
  }
  return kOk;
}

// Zone pairs, events and datapath CPU cost (the observability part of stats).
void print_stats_extra(const json& s) {
  std::printf("\n%-14s %-14s %12s %12s %12s\n", "SRC ZONE", "DST ZONE", "PASS", "DROP", "AUDIT");
  for (const auto& z : s["zone_pairs"])
    std::printf("%-14s %-14s %12lu %12lu %12lu\n", txt(z["src_zone"]).c_str(),
                txt(z["dst_zone"]).c_str(), z["pass"]["packets"].get<uint64_t>(),
                z["drop"]["packets"].get<uint64_t>(), z["audit"]["packets"].get<uint64_t>());
  const json& ev = s["events"];
  std::printf("\nevents: %lu emitted, %lu suppressed (rate limit), %lu lost (ring buffer full)\n",
              ev["emitted"].get<uint64_t>(), ev["suppressed"].get<uint64_t>(),
              ev["lost"].get<uint64_t>());
  const json& cpu = s["cpu"];
  std::printf("\ndatapath CPU: %.6f s over %lu runs%s\n", cpu["cpu_seconds"].get<double>(),
              cpu["run_count"].get<uint64_t>(),
              cpu["stats_enabled"].get<bool>() ? ""
                                               : " (BPF run-time statistics are off: run the "
                                                 "daemon, or sysctl kernel.bpf_stats_enabled=1)");
  for (const auto& p : cpu["programs"])
    std::printf("  %-16s %12lu runs %10s ns/packet\n", txt(p["program"]).c_str(),
                p["run_count"].get<uint64_t>(),
                p["ns_per_packet"].is_number()
                    ? std::to_string(std::lround(p["ns_per_packet"].get<double>())).c_str()
                    : "-");
  std::printf("%-16s %-15s %14s %10s %10s\n", "VM", "INTERFACE", "CPU S (EST.)", "EVENTS",
              "SUPPRESSED");
  for (const auto& e : s["endpoints"])
    std::printf("%-16s %-15s %14.6f %10lu %10lu\n", txt(e["vm"]).c_str(), txt(e["ifname"]).c_str(),
                e["cpu_seconds_estimated"].get<double>(), e["events"]["emitted"].get<uint64_t>(),
                e["events"]["suppressed"].get<uint64_t>());
}

int cmd_stats(const Globals& g) {
  auto got = read_only(g, "stats");
  if (auto* rc = std::get_if<int>(&got)) return *rc;
  const json& s = std::get<json>(got);
  if (g.json_out) {
    print_json(s);
    return kOk;
  }
  std::printf("%-24s %12s %14s\n", "REASON", "PACKETS", "BYTES");
  for (const auto& [name, c] : s["reasons"].items())
    if (c["packets"].get<uint64_t>())
      std::printf("%-24s %12lu %14lu\n", txt(name).c_str(), c["packets"].get<uint64_t>(),
                  c["bytes"].get<uint64_t>());
  std::printf("\n%-24s %-12s %12s %14s %10s  %s\n", "RULE", "ACTION", "PACKETS", "BYTES", "AUDIT",
              "MATCHES");
  for (const auto& r : s["rules"])
    std::printf("%-24s %-12s %12lu %14lu %10lu  %s\n", txt(r["name"]).c_str(),
                txt(r["action"]).c_str(), r["packets"].get<uint64_t>(), r["bytes"].get<uint64_t>(),
                r.value("audit_packets", uint64_t{0}), txt(r["summary"]).c_str());
  if (!s["never_matched"].empty())
    std::printf("\nnever matched: %s\n", txt(join(s["never_matched"])).c_str());
  std::printf("\n%-16s %-15s %16s %16s %16s %16s\n", "VM", "INTERFACE", "FROM-VM PASS",
              "FROM-VM DROP", "TO-VM PASS", "TO-VM DROP");
  for (const auto& e : s["endpoints"])
    std::printf(
        "%-16s %-15s %16lu %16lu %16lu %16lu\n", txt(e["vm"]).c_str(), txt(e["ifname"]).c_str(),
        e["from_vm_pass"]["packets"].get<uint64_t>(), e["from_vm_drop"]["packets"].get<uint64_t>(),
        e["to_vm_pass"]["packets"].get<uint64_t>(), e["to_vm_drop"]["packets"].get<uint64_t>());
  print_stats_extra(s);
  std::printf("\n%zu tracked flows\n", s["conntrack_entries"].get<size_t>());
  return kOk;
}

// `flows`: from the running daemon (the ring buffer's reader: recent events,
// then with --follow every new one), or without a daemon straight from the
// pinned ring buffer, which takes each event from any other reader.
int cmd_flows(const Globals& g, bool follow, size_t limit) {
  auto paths = engine::make_paths(g.pin_dir, g.state_dir);
  auto print = [&](const json& ev) {
    std::cout << (g.json_out ? ev.dump() : engine::event_text(ev)) << "\n" << std::flush;
  };
  bool first = true;
  std::optional<int> rc;
  auto via = daemon::stream(daemon::control_socket_path(paths.state_dir),
                            {{"cmd", "flows"}, {"limit", limit}, {"follow", follow}},
                            [&](const json& line) {
                              if (!first) {
                                print(line);
                                return true;
                              }
                              first = false;
                              if (!line.value("ok", false)) {
                                rc = report_response(g, line);
                                return false;
                              }
                              for (const auto& ev : line["events"]) print(ev);
                              return follow;
                            });
  if (!via) return report(g, via.error());
  if (*via) return rc.value_or(kOk);

  auto maps = datapath::open_pinned_maps(paths.pin_dir);
  if (!maps) {
    if (maps.error().kind() == ErrorKind::kNotFound)
      return report(g, Error(ErrorKind::kNotFound, "nothing applied under " + paths.pin_dir));
    return report(g, maps.error());
  }
  engine::FlowNames names;
  auto load_names = [&] {
    if (auto st = engine::read_state(paths); st)
      names = engine::flow_names(st->value_or(engine::State{}));
  };
  load_names();
  const int64_t offset = engine::monotonic_to_realtime_ns();
  auto reader = datapath::EventReader::open(
      maps->events.get(), [&](const zw_event& e) { print(engine::event_json(e, names, offset)); });
  if (!reader) return report(g, reader.error());
  if (!follow) {
    auto n = reader->poll(0);
    return n ? kOk : report(g, n.error());
  }
  for (int i = 0;; ++i) {
    auto n = reader->poll(500);
    if (!n) return report(g, n.error());
    if (i % 4 == 3) load_names();  // VMs come and go
  }
}

int cmd_down(const Globals& g) {
  auto paths = engine::make_paths(g.pin_dir, g.state_dir);
  if (auto st = datapath::ensure_bpffs(paths.pin_dir); !st) return report(g, st.error());
  auto lock = engine::PinLock::acquire(paths.pin_dir);
  if (!lock) return report(g, lock.error());
  auto rep = engine::down(paths);
  if (!rep) return report(g, rep.error());
  if (g.json_out)
    print_json({{"ok", true}, {"detached", rep->detached}});
  else
    std::cout << "down: detached " << rep->detached << " interfaces, removed " << paths.pin_dir
              << "\n";
  return kOk;
}

struct TraceFlags {
  engine::TraceRequest req;
  std::string proto = "tcp", flags = "syn";
  int port = -1, sport = -1, icmp_type = -1, family = 0;
};

// Parses the packet options shared by trace (and the expectation files'
// fields, which test validates itself).
Result<engine::TraceRequest> trace_request(const TraceFlags& f) {
  engine::TraceRequest r = f.req;
  auto proto = engine::parse_proto(f.proto);
  if (!proto)
    return fail(Error::invalid("--proto '" + f.proto + "': tcp, udp, icmp, icmpv6, sctp or 0-255"));
  r.proto = *proto;
  auto flags = engine::parse_tcp_flags(f.flags);
  if (!flags)
    return fail(
        Error::invalid("--flags '" + f.flags + "': comma-separated syn,ack,fin,rst,psh,urg"));
  r.tcp_flags = *flags;
  if (f.port >= 0) r.port = static_cast<uint16_t>(f.port);
  if (f.sport >= 0) r.sport = static_cast<uint16_t>(f.sport);
  if (f.icmp_type >= 0) r.icmp_type = static_cast<uint8_t>(f.icmp_type);
  r.family = f.family;
  return r;
}

// Read-only: loads the dry-run/verdict variant against the live maps; no
// lock (it writes nothing, and a concurrent apply is seen either before or
// after its flip, as a packet would).
int cmd_trace(const Globals& g, const TraceFlags& f) {
  auto req = trace_request(f);
  if (!req) return report(g, req.error());
  auto paths = engine::make_paths(g.pin_dir, g.state_dir);
  auto tracer = engine::Tracer::open(paths);
  if (!tracer) return report(g, tracer.error());
  if (auto st = tracer->refresh(); !st) return report(g, st.error());
  auto t = tracer->trace(*req);
  if (!t) return report(g, t.error());
  if (g.json_out)
    print_json(*t);
  else
    std::cout << text::printable_lines(engine::format_trace(*t));
  return (*t)["verdict"] == "allow" ? kOk : kVerdictDeny;
}

// Policy tests: the policy compiled into a private pin dir, every
// expectation run through the real program; no interface is touched.
int cmd_test(const Globals& g, const std::string& policy_path, const std::string& ex_path,
             const std::string& inv_path, const std::string& libvirt) {
  auto p = policy::load(policy_path);
  if (!p) return report(g, p.error());
  std::string where = ex_path;
  if (where.empty()) {
    auto d = engine::default_expectations(policy_path);
    if (!d)
      return report(g, Error::invalid("test: " + policy_path +
                                      " is a file: give --expectations FILE|DIR (a policy "
                                      "directory's default is its tests/ subdirectory)"));
    where = *d;
  }
  auto ex = engine::load_expectations(where);
  if (!ex) return report(g, ex.error());
  inventory::Inventory inv;
  if (!inv_path.empty() || !libvirt.empty()) {
    auto gathered = inventory::gather(libvirt, inv_path);
    if (!gathered) return report(g, gathered.error());
    for (const auto& w : gathered->warnings) log::warn(w);
    inv = std::move(gathered->inventory);
  } else {
    inv = engine::synthetic_inventory(*ex);
  }
  auto r = engine::run_expectations(*p, absolute(policy_path), inv, *ex);
  if (!r) return report(g, r.error());
  if (g.json_out)
    print_json(*r);
  else
    std::cout << text::printable_lines(engine::format_test_results(*r));
  return (*r)["ok"].get<bool>() ? kOk : kVerdictDeny;
}

// Read-only: compares what applying would write with the live state and
// maps; takes no lock and changes nothing.
int cmd_plan(const Globals& g, const std::string& policy_path, const std::string& inv_path,
             const std::string& libvirt) {
  auto p = policy::load(policy_path);
  if (!p) return report(g, p.error());
  std::optional<inventory::Gathered> inv;
  if (!inv_path.empty() || !libvirt.empty()) {
    auto gathered = inventory::gather(libvirt, inv_path);
    if (!gathered) return report(g, gathered.error());
    for (const auto& w : gathered->warnings) log::warn(w);
    inv = std::move(*gathered);
  }
  auto paths = engine::make_paths(g.pin_dir, g.state_dir);
  auto pl = engine::plan(paths, *p, absolute(policy_path), inv ? &inv->inventory : nullptr);
  if (!pl) return report(g, pl.error());
  if (g.json_out)
    print_json(*pl);
  else
    std::cout << text::printable_lines(engine::format_plan(*pl));
  return (*pl)["changes"].get<bool>() ? kChanges : kOk;
}

// Daemon options: the configuration file, then the flags given on the
// command line over it.
// `apply --cluster`: checked exactly as `check` does (same messages, same
// exit status), then stored in one txn. Nothing is written on any error.
int cmd_apply_cluster(const Globals& g, const std::string& endpoints, const std::string& prefix,
                      const std::string& policy_path) {
  auto pfx = cluster::normalize_prefix(prefix);
  if (!pfx) return report(g, pfx.error());
  auto files = cluster::read_policy_files(policy_path, [&]() -> Status {
    auto p = policy::load(policy_path);
    if (!p) return fail(std::move(p.error()));
    auto d = engine::build_desired(*p, inventory::Inventory{}, std::nullopt, "tc",
                                   [](const std::string&) -> uint32_t { return 1; });
    if (!d) return fail(std::move(d.error()));
    return {};
  });
  if (!files) return report(g, files.error());
  auto c = cluster::Client::make(cluster::split_endpoints(endpoints));
  if (!c) return report(g, c.error());
  cluster::PolicyRecord rec;
  rec.source = absolute(policy_path);
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const char* user = std::getenv("USER");
  rec.applied_by = std::string(user ? user : std::to_string(::getuid())) + "@" + host;
  rec.time = cluster::now_rfc3339();
  rec.files = std::move(*files);
  auto pub = cluster::publish_policy(*c, cluster::Layout{*pfx}, std::move(rec));
  if (!pub) return report(g, pub.error());
  if (g.json_out) {
    print_json({{"ok", true},
                {"revision", pub->revision},
                {"digest", pub->digest},
                {"unchanged", pub->unchanged}});
  } else {
    std::cout << (pub->unchanged ? "unchanged: the cluster already has this policy, revision "
                                 : "stored: cluster policy revision ")
              << pub->revision << " (sha256 " << pub->digest.substr(0, 12) << ")\n";
  }
  return kOk;
}

// `status --cluster`: from etcd alone. Exit 0 converged, kNotConverged not.
int cmd_status_cluster(const Globals& g, const std::string& endpoints, const std::string& prefix) {
  auto pfx = cluster::normalize_prefix(prefix);
  if (!pfx) return report(g, pfx.error());
  auto c = cluster::Client::make(cluster::split_endpoints(endpoints));
  if (!c) return report(g, c.error());
  auto st = cluster::cluster_status(*c, cluster::Layout{*pfx});
  if (!st) return report(g, st.error());
  const json& s = *st;
  bool converged = s["converged"].get<bool>();
  if (g.json_out) {
    print_json(s);
  } else {
    std::printf("cluster policy revision %ld  %s  %s\n", s["policy_revision"].get<long>(),
                s["policy_digest"].get<std::string>().substr(0, 12).c_str(),
                converged ? "converged" : "NOT CONVERGED");
    std::printf("%-20s %-9s %-10s %-6s %-6s %-13s %s\n", "HOST", "REVISION", "STATE", "LOCAL",
                "REMOTE", "ETCD", "SINCE");
    for (const auto& h : s["hosts"])
      std::printf("%-20s %-9ld %-10s %-6ld %-6ld %-13s %s\n", txt(h["host"]).c_str(),
                  h["policy_revision"].get<long>(),
                  h["converged"].get<bool>() ? "current" : "behind",
                  h["local_endpoints"].get<long>(), h["remote_endpoints"].get<long>(),
                  txt(h["etcd"]).c_str(), txt(h["since"]).c_str());
    if (s.contains("malformed"))
      for (const auto& m : s["malformed"])
        std::printf("malformed host record: %s\n", txt(m).c_str());
  }
  return converged ? kOk : kNotConverged;
}

struct DaemonFlags {
  CLI::Option *policy, *libvirt, *no_libvirt, *inventory, *attach, *tap_pattern, *resync;
  std::string policy_path, libvirt_uri, inventory_path, attach_mode;
  bool no_libvirt_set = false;
  std::vector<std::string> tap_patterns;
  std::string metrics_listen, flow_log;
  uint32_t event_rate = 0, event_burst = 0;
  bool no_bpf_stats = false;
  int resync_seconds = 30;
  std::string cluster, host, cluster_prefix;
};

Result<daemon::Options> daemon_options(const Globals& g, const config::Config& c,
                                       const DaemonFlags& f) {
  daemon::Options o;
  o.paths = engine::make_paths(g.pin_dir, g.state_dir);
  if (!f.cluster.empty())
    o.cluster.endpoints = cluster::split_endpoints(f.cluster);
  else
    o.cluster.endpoints = c.cluster.endpoints;
  if (!o.cluster.endpoints.empty()) {
    // The policy comes from the store; a local one would be a second truth.
    if (f.policy->count())
      return fail(
          Error::invalid("daemon: --policy and --cluster exclude each other: in cluster "
                         "mode the policy is the one `zonewall apply --cluster` stored"));
    for (const auto& e : o.cluster.endpoints)
      if (!e.starts_with("http://") && !e.starts_with("https://"))
        return fail(Error::invalid("daemon: --cluster: '" + e +
                                   "' is not an etcd client URL (http://HOST:PORT)"));
    o.cluster.host = f.host.empty() ? c.cluster.host : f.host;
    if (o.cluster.host.empty()) {
      char h[256] = {};
      ::gethostname(h, sizeof h - 1);
      o.cluster.host = h;
    }
    if (auto st = cluster::check_segment(o.cluster.host, "daemon: --host"); !st)
      return fail(std::move(st.error()));
    auto pfx =
        cluster::normalize_prefix(f.cluster_prefix.empty() ? c.cluster.prefix : f.cluster_prefix);
    if (!pfx) return fail(std::move(pfx.error()));
    o.cluster.prefix = *pfx;
    o.cluster.lease_ttl = c.cluster.lease_ttl;
  }
  o.policy_path = f.policy->count() ? f.policy_path : c.policy;
  if (!o.cluster.endpoints.empty()) o.policy_path.clear();
  if (o.policy_path.empty() && o.cluster.endpoints.empty())
    return fail(Error::invalid("daemon: no policy: give --policy or \"policy\" in " +
                               (c.source.empty() ? g.config_path : c.source)));
  o.libvirt_uri = c.libvirt.value_or("");
  if (f.libvirt->count()) o.libvirt_uri = f.libvirt_uri;
  if (f.no_libvirt_set) o.libvirt_uri.clear();
  o.inventory_path = f.inventory->count() ? f.inventory_path : c.inventory;
  o.default_attach = f.attach->count() ? f.attach_mode : c.attach_default;
  o.attach_rules = c.attach_rules;
  o.tap_patterns = f.tap_pattern->count() ? f.tap_patterns : c.tap_patterns;
  o.resync_seconds = f.resync->count() ? f.resync_seconds : c.resync_seconds;
  if (c.read_group) {
    o.access.read_gid = c.read_group->gid;
    o.access.read_group = c.read_group->name;
  }
  if (c.apply_group) {
    o.access.apply_gid = c.apply_group->gid;
    o.access.apply_group = c.apply_group->name;
  }
  if (!o.policy_path.empty()) o.policy_path = absolute(o.policy_path);
  o.inventory_path = absolute(o.inventory_path);
  o.metrics_listen = f.metrics_listen.empty() ? c.metrics_listen : f.metrics_listen;
  o.flow_log = f.flow_log.empty() ? c.flow_log : absolute(f.flow_log);
  o.event_rate = f.event_rate ? f.event_rate : c.flow_log_rate;
  o.event_burst = f.event_burst;
  o.bpf_stats = !f.no_bpf_stats;
  return o;
}

log::Level level_named(const std::string& s) {
  return s == "debug"   ? log::Level::kDebug
         : s == "warn"  ? log::Level::kWarn
         : s == "error" ? log::Level::kError
                        : log::Level::kInfo;
}

}  // namespace

int run(int argc, char** argv) {
  Globals g;
  CLI::App app{"zonewall: zone firewall for VM east-west traffic (eBPF)", "zonewall"};
  app.fallthrough();
  app.require_subcommand(1);
  app.set_version_flag("--version", ZW_VERSION);
  app.add_option("--pin-dir", g.pin_dir, "bpffs directory for maps, programs and links")
      ->capture_default_str();
  app.add_option("--state-dir", g.state_dir,
                 "controller state (default /run/zonewall, or /run/zonewall-<pin dir name>)");
  auto* config_opt =
      app.add_option("--config", g.config_path, "daemon configuration file (read if it exists)")
          ->capture_default_str();
  auto* pin_opt = app.get_option("--pin-dir");
  auto* state_opt = app.get_option("--state-dir");
  app.add_flag("--json", g.json_out, "machine-readable output");
  app.add_flag("-v,--verbose", g.verbose, "more logging (repeat for debug)");

  std::string policy_path, inv_path, libvirt, attach = "tc";
  auto* check = app.add_subcommand("check", "validate and compile a policy (file or directory)");
  check->add_option("POLICY", policy_path, "policy file or directory")->required();
  check->add_option("--inventory", inv_path, "static inventory: also check zone membership");
  check->add_option("--libvirt", libvirt, "libvirt URI: also check the zone of every domain");

  auto* apply = app.add_subcommand("apply", "apply a policy atomically to the VM interfaces");
  apply->add_option("POLICY", policy_path, "policy file or directory")->required();
  apply->add_option("--inventory", inv_path,
                    "static JSON inventory (alone, or overriding libvirt)");
  apply->add_option("--libvirt", libvirt,
                    "read VM identity from libvirt at this URI (e.g. qemu:///system)");
  apply->add_option("--attach", attach, "from-VM hook for interfaces that name none")
      ->check(CLI::IsMember({"tc", "xdp"}))
      ->capture_default_str();
  std::string cluster_eps, cluster_prefix = cluster::kDefaultPrefix;
  apply->add_option("--cluster", cluster_eps,
                    "store the checked policy in etcd for every host (ENDPOINTS: "
                    "http://HOST:PORT,...) instead of applying it here");
  apply->add_option("--cluster-prefix", cluster_prefix, "etcd key prefix")->capture_default_str();

  DaemonFlags df;
  auto* dmn =
      app.add_subcommand("daemon", "keep the policy on every VM as VMs start, stop and move");
  df.policy = dmn->add_option("--policy", df.policy_path,
                              "policy file or directory (default: \"policy\" in the config)");
  df.libvirt = dmn->add_option("--libvirt", df.libvirt_uri, "libvirt URI (default qemu:///system)");
  df.no_libvirt = dmn->add_flag("--no-libvirt", df.no_libvirt_set,
                                "static inventory only (veth/netns workloads)");
  df.inventory = dmn->add_option("--inventory", df.inventory_path,
                                 "static JSON inventory (alone, or overriding libvirt)");
  df.attach = dmn->add_option("--attach", df.attach_mode,
                              "from-VM hook for interfaces that name none (default tc)")
                  ->check(CLI::IsMember({"tc", "xdp"}));
  df.tap_pattern = dmn->add_option(
      "--tap-pattern", df.tap_patterns,
      "interfaces hooked (fail closed) the moment they appear; repeatable; default vnet*");
  dmn->add_option("--cluster", df.cluster,
                  "cluster mode: etcd endpoints (http://HOST:PORT,...); the policy and the other "
                  "hosts' VMs come from there (docs/cluster.md)");
  dmn->add_option("--host", df.host, "this host's name in the cluster (default: hostname)");
  dmn->add_option("--cluster-prefix", df.cluster_prefix, "etcd key prefix (default /zonewall)");
  df.resync =
      dmn->add_option("--resync", df.resync_seconds, "full reconcile every N seconds (default 30)")
          ->check(CLI::Range(1, 86400));

  dmn->add_option("--metrics", df.metrics_listen,
                  "serve Prometheus metrics at ADDRESS:PORT (e.g. 127.0.0.1:9464)");
  dmn->add_option("--flow-log", df.flow_log, "append flow/deny events as JSON lines to FILE");
  dmn->add_option("--event-rate", df.event_rate, "events per second per VM interface (default 100)")
      ->check(CLI::Range(1, ZW_EV_RATE_MAX));
  dmn->add_option("--event-burst", df.event_burst,
                  "event bucket depth per VM interface (default 200)")
      ->check(CLI::Range(1, ZW_EV_RATE_MAX));
  dmn->add_flag("--no-bpf-stats", df.no_bpf_stats,
                "do not keep the kernel's BPF run-time statistics on (no CPU cost figures)");

  bool flows_follow = false;
  size_t flows_limit = 1000;
  auto* flows = app.add_subcommand("flows", "flow and deny events: time, VMs, zones, rule, reason");
  flows->add_flag("-f,--follow", flows_follow, "keep printing new events");
  flows->add_option("-n,--limit", flows_limit, "recent events from the daemon (default 1000)");

  auto* status =
      app.add_subcommand("status", "VMs, zones, interfaces and whether each is enforced");
  status->add_option("--cluster", cluster_eps,
                     "the cluster instead: which policy revision each host enforces, from etcd; "
                     "exit 0 converged, 9 not converged");
  status->add_option("--cluster-prefix", cluster_prefix, "etcd key prefix")->capture_default_str();
  auto* stats = app.add_subcommand("stats", "counters by reason, rule and VM interface");
  auto* down = app.add_subcommand("down", "detach everything and remove pins and state");

  auto* plan = app.add_subcommand(
      "plan",
      "what applying a policy would change (zones, rules, VM zones, established flows cut), "
      "touching nothing; exit 0 no changes, 8 changes");
  plan->add_option("POLICY", policy_path, "policy file or directory")->required();
  plan->add_option("--inventory", inv_path, "static inventory (default: the VMs as last applied)");
  plan->add_option("--libvirt", libvirt, "take VMs from libvirt at this URI");

  std::string ex_path;
  auto* test = app.add_subcommand(
      "test",
      "check a policy's expectations through the real datapath program in a private pin dir "
      "(no interface touched); exit 0 all pass, 7 any failed");
  test->add_option("POLICY", policy_path, "policy file or directory")->required();
  test->add_option("--expectations", ex_path,
                   "expectations file or directory of *.json (default: POLICY/tests/)");
  test->add_option("--inventory", inv_path,
                   "static inventory (default: one made-up VM per name in the expectations)");
  test->add_option("--libvirt", libvirt, "take VMs from libvirt at this URI");

  TraceFlags tf;
  auto* trace = app.add_subcommand(
      "trace",
      "run a packet through the loaded datapath (dry run): verdict, rule, reason per hook; "
      "exit 0 allowed, 7 dropped");
  trace->add_option("--from", tf.req.from, "VM name, VM/INTERFACE, UUID, interface or address")
      ->required();
  trace->add_option("--to", tf.req.to, "VM name, VM/INTERFACE, UUID, interface or address")
      ->required();
  trace->add_option("--proto", tf.proto, "tcp, udp, icmp, icmpv6, sctp or a protocol number")
      ->capture_default_str();
  trace->add_option("--port", tf.port, "destination port (tcp, udp, sctp)")
      ->check(CLI::Range(0, 65535));
  trace->add_option("--sport", tf.sport, "source port / ICMP echo id (default 40000)")
      ->check(CLI::Range(0, 65535));
  trace->add_option("--icmp-type", tf.icmp_type, "ICMP type (default echo request)")
      ->check(CLI::Range(0, 255));
  trace->add_option("--family", tf.family, "4 or 6 (default: from the endpoints)")
      ->check(CLI::IsMember({4, 6}));
  trace->add_option("--flags", tf.flags, "TCP flags, e.g. syn or ack or syn,ack")
      ->capture_default_str();

  // Build-time generators (CMake runs them; not in --help).
  if (argc == 3 && std::string_view(argv[1]) == "--generate-man")
    return write_man_pages(app, argv[2]);
  if (argc == 2 && std::string_view(argv[1]) == "--generate-completion") {
    std::cout << bash_completion(app);
    return kOk;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  }
  log::set_level(g.verbose >= 2   ? log::Level::kDebug
                 : g.verbose == 1 ? log::Level::kInfo
                                  : log::Level::kWarn);
  datapath::install_libbpf_logger();

  if (*check) return cmd_check(g, policy_path, inv_path, libvirt);
  if (*test) return cmd_test(g, policy_path, ex_path, inv_path, libvirt);
  // Every other command finds the datapath where the configuration puts it
  // (a --pin-dir on the command line names another instance: its state dir
  // is derived from it unless --state-dir is given too).
  auto cfg = config::load(g.config_path, config_opt->count() > 0);
  if (!cfg) return report(g, cfg.error());
  if (!pin_opt->count()) {
    g.pin_dir = cfg->pin_dir;
    if (!state_opt->count()) g.state_dir = cfg->state_dir;
  }
  if (*apply && !cluster_eps.empty())
    return cmd_apply_cluster(g, cluster_eps, cluster_prefix, policy_path);
  if (*status && !cluster_eps.empty()) return cmd_status_cluster(g, cluster_eps, cluster_prefix);
  if (*apply) return cmd_apply(g, policy_path, inv_path, libvirt, attach);
  if (*trace) return cmd_trace(g, tf);
  if (*plan) return cmd_plan(g, policy_path, inv_path, libvirt);
  if (*dmn) {
    if (g.verbose == 0) log::set_level(level_named(cfg->log_level));
    auto dopt = daemon_options(g, *cfg, df);
    if (!dopt) return report(g, dopt.error());
    return daemon::run(*dopt);
  }
  if (*flows) return cmd_flows(g, flows_follow, flows_limit);
  if (*status) return cmd_status(g);
  if (*stats) return cmd_stats(g);
  if (*down) return cmd_down(g);
  return kUsage;
}

}  // namespace zw::cli
