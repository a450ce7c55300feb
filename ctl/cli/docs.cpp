// Renders the CLI11 definition as man(7) pages and a bash completion script.
// Prose that --help has no room for (what a command does in full, exit
// statuses, files) lives in the tables below, next to the generator.
#include "cli/docs.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

namespace zw::cli {

namespace {

// roff: backslashes and hyphens escaped, no line starting with a control
// character.
std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\')
      out += "\\e";
    else if (c == '-')
      out += "\\-";
    else
      out += c;
  }
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out = "\\&" + out;
  return out;
}

struct Page {
  const char* description;  // roff source, paragraphs separated by .PP
  const char* extra;        // further sections, roff source
};

// Per subcommand: the long description (roff). Commands not listed get
// their one-line help only.
const std::map<std::string, Page>& pages() {
  static const std::map<std::string, Page> kPages = {
      {"check",
       {"Parses, validates and compiles a zone policy (a JSON file, or a directory of "
        "\\fB*.json\\fR files merged in file-name order) without touching the datapath. "
        "With \\fB\\-\\-inventory\\fR or \\fB\\-\\-libvirt\\fR it also assigns every VM "
        "interface to its zone and runs every check \\fBapply\\fR runs before writing "
        "(address conflicts, map capacities), so it is a faithful CI gate.\n.PP\n"
        "Errors name the file and the JSON pointer of the offending value; all errors of a "
        "file are reported at once.",
        ".SH EXAMPLES\n.nf\nzonewall check /etc/zonewall/policy\n"
        "zonewall check \\-\\-json policy.json \\-\\-inventory inventory.json\n.fi\n"}},
      {"apply",
       {"Loads a policy atomically: the complete new generation is written next to the "
        "live one, the programs are attached to every VM interface (tc filters replaced in "
        "place, XDP links updated), and one 32\\-bit word is flipped. Packets see the old "
        "policy or the new one, never a mix. Established flows are re\\-judged against the "
        "new generation; conntrack is kept.\n.PP\n"
        "When a daemon runs, the request is handed to it over its control socket and "
        "checked against the caller's credentials (root, or the configured apply group; "
        "see \\fBzonewall.json\\fR(5)). Otherwise \\fBapply\\fR writes the datapath itself and "
        "needs \\fB\\-\\-inventory\\fR and/or \\fB\\-\\-libvirt\\fR.\n.PP\n"
        "With \\fB\\-\\-cluster\\fR \\fIENDPOINTS\\fR the policy is checked exactly as "
        "\\fBcheck\\fR checks it (same messages, same exit status) and then stored in etcd in "
        "one transaction for every cluster daemon to apply; nothing is written on any error. "
        "It prints the cluster policy revision. See \\fIdocs/cluster.md\\fR.",
        ""}},
      {"daemon",
       {"Keeps the policy on every VM interface while VMs are defined, started, stopped, "
        "migrated and re\\-tagged: libvirt domain events, netlink link events, "
        "\\fBSIGHUP\\fR (re\\-reads the policy), \\fBzonewall apply\\fR over the control "
        "socket and a periodic resync all end in the same atomic apply.\n.PP\n"
        "Settings come from the configuration file (\\fB\\-\\-config\\fR, default "
        "\\fI/etc/zonewall/zonewall.json\\fR, see \\fBzonewall.json\\fR(5)); the options below "
        "override it. A new interface matching a tap pattern is hooked the moment netlink "
        "reports it and drops everything until its VM is known.\n.PP\n"
        "Stopping the daemon never opens the firewall: maps, programs and XDP links are "
        "pinned in bpffs and tc filters belong to the kernel. A restarted daemon loads new "
        "programs and replaces the old ones in place, keeping conntrack and counters.\n.PP\n"
        "The control socket \\fI<state dir>/control.sock\\fR admits root only (mode 0600) "
        "unless \\fBcontrol_socket.read_group\\fR or \\fBapply_group\\fR is configured; then "
        "it is mode 0666 and every request is checked against the caller's kernel "
        "credentials (SO_PEERCRED).",
        ".SH SIGNALS\n.TP\n.B SIGHUP\nRe\\-read the policy and reconcile.\n.TP\n"
        ".BR SIGTERM \", \" SIGINT\nExit; enforcement stays in place.\n"
        ".SH ENVIRONMENT\nThe systemd unit reads \\fB/etc/default/zonewall\\fR: "
        "\\fBZONEWALL_OPTS\\fR holds global options (for example \\fB\\-\\-config\\fR "
        "\\fIFILE\\fR).\n"
        ".SH CLUSTER MODE\nWith \\fB\\-\\-cluster\\fR \\fIENDPOINTS\\fR (or "
        "\\fBcluster.endpoints\\fR in the configuration) the policy comes from etcd "
        "(\\fBzonewall apply \\-\\-cluster\\fR) and \\fB\\-\\-policy\\fR is refused; "
        "this host's VMs are published under a lease and the other hosts' VMs are zoned "
        "here by address. If etcd is unreachable the last state stays enforced. "
        "See \\fIdocs/cluster.md\\fR.\n"}},
      {"status",
       {"Shows the live generation, the policy it came from, and every VM interface with its "
        "zone, hook and whether it is enforced. Interfaces hooked by the daemon that no VM "
        "claims are listed as dropping (fail closed).\n.PP\n"
        "When a daemon runs the answer comes from it over the control socket, so members of "
        "the configured read group can use it without privileges; otherwise the pins and "
        "state are read directly (root). A daemon in cluster mode adds a cluster section "
        "(host, etcd connected or not, policy revision enforced, remote VMs).\n.PP\n"
        "With \\fB\\-\\-cluster\\fR \\fIENDPOINTS\\fR it reads etcd only (no daemon "
        "needed): the stored policy revision and, per live host, the revision it enforces; "
        "exit status 0 when every live host enforces the current revision, 9 when not.",
        ""}},
      {"stats",
       {"Packets and bytes by verdict reason, by rule (and the rules that never matched), "
        "and by VM interface in both directions, plus the number of tracked flows. Per rule, "
        "AUDIT counts the packets that passed only because the rule or a zone is in audit "
        "mode; per zone pair, pass, drop and audit. Events (emitted, suppressed, lost) and "
        "the datapath's CPU time follow. Through "
        "the daemon when one runs, as for \\fBstatus\\fR.",
        ""}},
      {"down",
       {"Detaches every program zonewall attached, removes its pins and its state. VM "
        "traffic is no longer filtered afterwards. Stop the daemon first: it holds the pin "
        "directory lock.",
        ""}},
  };
  return kPages;
}

constexpr const char* kExitStatus =
    ".SH EXIT STATUS\n.TP\n.B 0\nSuccess.\n.TP\n.B 1\nSystem error (kernel, libbpf, "
    "filesystem).\n.TP\n.B 2\nBad command line.\n.TP\n.B 3\nInvalid policy, inventory or "
    "configuration: nothing was applied.\n.TP\n.B 4\nAnother command holds the pin directory "
    "lock, or the policy directory kept changing while it was read: nothing was applied.\n.TP\n.B "
    "5\nNothing applied under this pin directory.\n.TP\n.B 6\nThe daemon refused "
    "the request for the caller's credentials.\n.TP\n.B 7\n\\fBtrace\\fR: the packet would be "
    "dropped; \\fBtest\\fR: an expectation failed.\n.TP\n.B 8\n\\fBplan\\fR: applying the "
    "policy would change something.\n.TP\n.B 9\n\\fBstatus \\-\\-cluster\\fR: "
    "some host does not enforce the current cluster policy revision (not converged).\n";

void options(std::ostream& o, const CLI::App& app, bool positional) {
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->get_positional() != positional || opt->get_group().empty()) continue;
    if (app.get_parent() && opt->check_lname("help")) continue;  // listed once, globally
    std::string names = positional ? opt->get_name(true) : opt->get_name(false, true);
    std::string line;
    for (size_t pos = 0;;) {
      size_t comma = names.find(',', pos);
      std::string n = names.substr(pos, comma == std::string::npos ? comma : comma - pos);
      line += (line.empty() ? "" : ", ") + std::string("\\fB") + esc(n) + "\\fR";
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    if (!positional && opt->get_items_expected_max() > 0)
      line += " \\fI" + esc(opt->get_type_name()) + "\\fR";
    o << ".TP\n" << line << "\n" << esc(opt->get_description());
    if (!opt->get_default_str().empty() && opt->get_items_expected_max() > 0)
      o << " (default: " << esc(opt->get_default_str()) << ")";
    o << "\n";
  }
}

std::string synopsis_args(const CLI::App& sub) {
  std::string s;
  for (const CLI::Option* opt : sub.get_options())
    if (opt->get_positional()) s += " \\fI" + esc(opt->get_name(true)) + "\\fR";
  return s;
}

std::string header(const std::string& name, const std::string& section) {
  std::string up = name;
  for (auto& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return ".TH " + esc(up) + " " + section +
         " \"\" \"zonewall " ZW_VERSION "\" \"System Administration\"\n";
}

std::string main_page(const CLI::App& app) {
  std::ostringstream o;
  o << header("zonewall", "8") << ".SH NAME\nzonewall \\- " << esc(app.get_description().substr(10))
    << "\n.SH SYNOPSIS\n.B zonewall\n[\\fIglobal options\\fR] \\fIcommand\\fR "
       "[\\fIoptions\\fR]\n.SH DESCRIPTION\n"
       "zonewall filters the east\\-west traffic between virtual machines on one Linux host "
       "by zone. eBPF programs on the host side of each VM's tap or veth judge what the VM "
       "sends (tc ingress or XDP) and what it receives (tc egress); zones come from the VM's "
       "identity in libvirt (name, UUID, zone tag) or a static inventory, and policies are "
       "JSON files kept in version control.\n.PP\n"
       "The BPF programs are embedded in the binary (a libbpf skeleton); a copy of the "
       "object is installed as \\fI/usr/lib/zonewall/zonewall.bpf.o\\fR for inspection only.\n"
       ".SH COMMANDS\n";
  for (const CLI::App* sub : app.get_subcommands({}))
    o << ".TP\n.BR zonewall\\-" << esc(sub->get_name()) << " (8)\n"
      << esc(sub->get_description()) << "\n";
  o << ".SH GLOBAL OPTIONS\nAccepted before or after the command.\n";
  options(o, app, false);
  o << kExitStatus
    << ".SH FILES\n.TP\n.I /etc/zonewall/zonewall.json\nDaemon configuration, see "
       "\\fBzonewall.json\\fR(5); other commands read \\fBpin_dir\\fR and \\fBstate_dir\\fR "
       "from it.\n.TP\n.I /etc/zonewall/policy\nThe policy the packaged service "
       "enforces (a file or a directory).\n.TP\n.I /sys/fs/bpf/zonewall\nPinned maps, "
       "programs and XDP links.\n.TP\n.I /run/zonewall\nState and the control socket.\n.TP\n"
       ".I /usr/share/zonewall\nJSON Schemas for policies, inventories and the "
       "configuration; example policies.\n"
       ".SH SEE ALSO\n";
  std::string see;
  for (const CLI::App* sub : app.get_subcommands({}))
    see += ".BR zonewall\\-" + esc(sub->get_name()) + " (8),\n";
  o << see << ".BR zonewall.json (5),\n.BR bpftool (8),\n.BR tc (8)\n";
  return o.str();
}

std::string sub_page(const CLI::App& app, const CLI::App& sub) {
  std::ostringstream o;
  std::string name = "zonewall-" + sub.get_name();
  o << header(name, "8") << ".SH NAME\n"
    << esc(name) << " \\- " << esc(sub.get_description())
    << "\n.SH SYNOPSIS\n.B zonewall\n[\\fIglobal options\\fR] \\fB" << esc(sub.get_name()) << "\\fR"
    << synopsis_args(sub) << " [\\fIoptions\\fR]\n.SH DESCRIPTION\n";
  auto it = pages().find(sub.get_name());
  o << (it != pages().end() ? it->second.description : esc(sub.get_description()).c_str()) << "\n";
  bool has_pos = false, has_opt = false;
  for (const CLI::Option* opt : sub.get_options()) {
    if (opt->get_group().empty() || opt->check_lname("help")) continue;
    (opt->get_positional() ? has_pos : has_opt) = true;
  }
  if (has_pos) {
    o << ".SH ARGUMENTS\n";
    options(o, sub, true);
  }
  if (has_opt) {
    o << ".SH OPTIONS\n";
    options(o, sub, false);
  }
  o << ".SH GLOBAL OPTIONS\n";
  options(o, app, false);
  if (it != pages().end()) o << it->second.extra;
  o << kExitStatus << ".SH SEE ALSO\n.BR zonewall (8),\n.BR zonewall.json (5)\n";
  return o.str();
}

// Option names of `app` (long and short), space separated, and those of them
// that take a value.
void option_words(const CLI::App& app, std::string& all, std::string& with_value) {
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->get_positional() || opt->get_group().empty()) continue;
    for (const auto& n : opt->get_lnames()) {
      all += " --" + n;
      if (opt->get_items_expected_max() > 0) with_value += " --" + n;
    }
    for (const auto& n : opt->get_snames()) {
      all += " -" + n;
      if (opt->get_items_expected_max() > 0) with_value += " -" + n;
    }
  }
}

}  // namespace

int write_man_pages(const CLI::App& app, const std::string& dir) {
  auto write = [&](const std::string& file, const std::string& text) {
    std::ofstream f(dir + "/" + file);
    f << text;
    return static_cast<bool>(f);
  };
  if (!write("zonewall.8", main_page(app))) {
    std::fprintf(stderr, "zonewall: error: cannot write %s/zonewall.8\n", dir.c_str());
    return 1;
  }
  for (const CLI::App* sub : app.get_subcommands({}))
    if (!write("zonewall-" + sub->get_name() + ".8", sub_page(app, *sub))) {
      std::fprintf(stderr, "zonewall: error: cannot write into %s\n", dir.c_str());
      return 1;
    }
  return 0;
}

std::string bash_completion(const CLI::App& app) {
  std::string global, global_val;
  option_words(app, global, global_val);
  std::ostringstream o;
  o << "# bash completion for zonewall (generated from the command line definition)\n"
       "_zonewall() {\n"
       "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
       "    local global_opts='"
    << global.substr(1) << "'\n    local global_val=' " << global_val.substr(1)
    << " '\n    local cmds='";
  std::string cmds;
  for (const CLI::App* sub : app.get_subcommands({})) cmds += " " + sub->get_name();
  o << cmds.substr(1) << "'\n"
    << "    local cmd='' i w\n"
       "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
       "        w=${COMP_WORDS[i]}\n"
       "        if [[ $global_val == *\" $w \"* ]]; then ((i++)); continue; fi\n"
       "        [[ $w == -* ]] && continue\n"
       "        cmd=$w\n        break\n    done\n"
       "    local opts='' vals=' '\n"
       "    case $cmd in\n";
  for (const CLI::App* sub : app.get_subcommands({})) {
    std::string all, val;
    option_words(*sub, all, val);
    o << "    " << sub->get_name() << ") opts='" << (all.empty() ? "" : all.substr(1))
      << "'; vals=' " << (val.empty() ? "" : val.substr(1) + " ") << "' ;;\n";
  }
  o << "    esac\n"
       "    case $prev in\n"
       "    --attach) COMPREPLY=($(compgen -W 'tc xdp' -- \"$cur\")); return ;;\n"
       "    --libvirt) COMPREPLY=($(compgen -W 'qemu:///system qemu:///session test:///default' "
       "-- \"$cur\")); return ;;\n"
       "    --pin-dir|--state-dir) COMPREPLY=($(compgen -d -- \"$cur\")); return ;;\n"
       "    esac\n"
       "    if [[ $global_val$vals == *\" $prev \"* ]]; then\n"
       "        COMPREPLY=($(compgen -f -- \"$cur\"))\n        return\n    fi\n"
       "    if [[ $cur == -* ]]; then\n"
       "        COMPREPLY=($(compgen -W \"$opts $global_opts\" -- \"$cur\"))\n"
       "    elif [[ -z $cmd ]]; then\n"
       "        COMPREPLY=($(compgen -W \"$cmds\" -- \"$cur\"))\n"
       "    else\n"
       "        COMPREPLY=($(compgen -f -- \"$cur\"))\n"
       "    fi\n"
       "}\n"
       "complete -o filenames -F _zonewall zonewall\n";
  return o.str();
}

}  // namespace zw::cli
