// libFuzzer target: the policy parser, validator and compiler. Properties:
// no crash, no leak, no undefined behaviour (ASan/UBSan); every error names
// where; unknown keys anywhere in an accepted policy are refused; the
// compiled entries answer like first-match over the rules (compile.h's
// evaluate) and like the reference model's decide() on probe points.
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "model/model.h"
#include "policy/compile.h"
#include "policy/json.h"
#include "unknown_keys.h"

using namespace zw;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "fuzz_policy: %s\n", what.c_str());
  std::abort();
}

void probe(const policy::Policy& p, const policy::Ids& ids, const policy::Compiled& c) {
  std::set<uint32_t> ports = {0, 1, 255, 256, 1023, 1024, 65535};
  for (const auto& r : p.rules) {
    for (const auto& pr : r.ports)
      for (int d : {-1, 0, 1}) {
        ports.insert((pr.lo + d) & 0xffff);
        ports.insert((pr.hi + d) & 0xffff);
      }
    for (uint8_t t : r.icmp_types) ports.insert(t);
  }
  int pairs = 0;
  for (const auto& [sn, sz] : ids.zone)
    for (const auto& [dn, dz] : ids.zone) {
      if (++pairs > 64) return;
      for (uint8_t proto : {6, 17, 132, 1, 58, 47, 0}) {
        for (uint32_t port : ports) {
          uint16_t pt = static_cast<uint16_t>(port);
          if ((proto == 1 || proto == 58) && pt > 255) continue;
          zw_verdict want = policy::evaluate(p, ids, sz, dz, proto, pt);
          zw_verdict got = policy::lookup(c, sz, dz, proto, pt);
          if (want.rule_id != got.rule_id || want.action != got.action || want.flags != got.flags)
            die("compiled lookup differs from first-match: " + sn + " -> " + dn + " proto " +
                std::to_string(proto) + " port " + std::to_string(pt));
          model::PolicyAnswer m = model::decide(p, sn, dn, proto, pt);
          uint32_t mid = m.rule.kind == model::RuleRef::Kind::kIntra   ? ZW_RULE_DEFAULT_INTRA
                         : m.rule.kind == model::RuleRef::Kind::kInter ? ZW_RULE_DEFAULT_INTER
                                                                       : ids.rule.at(m.rule.name);
          if (mid != want.rule_id || m.allow != (want.action == ZW_ACT_ALLOW) ||
              m.audit != ((want.flags & ZW_VF_AUDIT) != 0))
            die("model decide() differs from evaluate(): " + sn + " -> " + dn + " proto " +
                std::to_string(proto) + " port " + std::to_string(pt));
        }
      }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto p = policy::parse(text, "fuzz.json");
  if (!p) {
    if (p.error().str().find("fuzz.json") == std::string::npos)
      die("error does not name the file: " + p.error().str());
    return 0;
  }
  fuzz::expect_unknown_keys_rejected(text, [](const std::string& t) {
    auto q = policy::parse(t, "fuzz.json");
    return q ? std::string() : q.error().str();
  });
  policy::Ids ids = policy::assign_zone_ids(*p);
  auto rules = policy::assign_rule_ids(*p);
  if (!rules) return 0;
  ids.rule = *rules;
  auto c = policy::compile(*p, ids);
  if (!c) return 0;
  probe(*p, ids, *c);
  return 0;
}
