// etcd v3 over the JSON gateway: request/response calls with failover, and
// the streaming watch on its own thread.
#include "cluster/etcd.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <sys/eventfd.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "util/log.h"

namespace zw::cluster {

using nlohmann::json;

namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;

struct SlistDeleter {
  void operator()(curl_slist* s) const { curl_slist_free_all(s); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

size_t append_body(char* p, size_t size, size_t n, void* ud) {
  static_cast<std::string*>(ud)->append(p, size * n);
  return size * n;
}

// 64-bit fields come as strings ("5"); tolerate numbers too; absent = 0.
int64_t num(const json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end()) return 0;
  if (it->is_string()) {
    try {
      return std::stoll(it->get<std::string>());
    } catch (...) {
      return 0;
    }
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  return 0;
}

Result<KeyValue> kv_of(const json& j) {
  KeyValue kv;
  auto k = base64_decode(j.value("key", ""));
  if (!k) return fail(std::move(k.error()).wrap("key"));
  auto v = base64_decode(j.value("value", ""));
  if (!v) return fail(std::move(v.error()).wrap("value"));
  kv.key = std::move(*k);
  kv.value = std::move(*v);
  kv.create_revision = num(j, "create_revision");
  kv.mod_revision = num(j, "mod_revision");
  kv.version = num(j, "version");
  kv.lease = num(j, "lease");
  return kv;
}

json op_json(const Op& o) {
  if (o.kind == Op::Kind::kPut) {
    json p{{"key", base64_encode(o.key)}, {"value", base64_encode(o.value)}};
    if (o.lease) p["lease"] = std::to_string(o.lease);
    return {{"request_put", p}};
  }
  json d{{"key", base64_encode(o.key)}};
  if (o.kind == Op::Kind::kDeletePrefix) d["range_end"] = base64_encode(prefix_end(o.key));
  return {{"request_delete_range", d}};
}

json compare_json(const Compare& c) {
  static const char* targets[] = {"VERSION", "CREATE", "MOD", "VALUE"};
  static const char* ops[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
  json j{{"key", base64_encode(c.key)},
         {"target", targets[static_cast<int>(c.target)]},
         {"result", ops[static_cast<int>(c.op)]}};
  switch (c.target) {
    case Compare::Target::kVersion:
      j["version"] = std::to_string(c.number);
      break;
    case Compare::Target::kCreate:
      j["create_revision"] = std::to_string(c.number);
      break;
    case Compare::Target::kMod:
      j["mod_revision"] = std::to_string(c.number);
      break;
    case Compare::Target::kValue:
      j["value"] = base64_encode(c.value);
      break;
  }
  return j;
}

void set_common(CURL* c, const Timeouts& t) {
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, t.connect_ms);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 2L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 1L);
  curl_easy_setopt(c, CURLOPT_PROXY, "");  // never through an http_proxy
}

}  // namespace

std::vector<std::string> split_endpoints(const std::string& csv) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= csv.size()) {
    size_t c = csv.find(',', pos);
    std::string item = csv.substr(pos, c == std::string::npos ? std::string::npos : c - pos);
    auto b = item.find_first_not_of(" \t");
    auto e = item.find_last_not_of(" \t");
    if (b != std::string::npos) {
      item = item.substr(b, e - b + 1);
      while (!item.empty() && item.back() == '/') item.pop_back();
      out.push_back(item);
    }
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  return out;
}

std::string prefix_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

std::string base64_encode(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

Result<std::string> base64_decode(const std::string& in) {
  if (in.empty()) return std::string();
  if (in.size() % 4 != 0) return fail(Error::invalid("base64: length not a multiple of 4"));
  std::string out(3 * (in.size() / 4), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return fail(Error::invalid("base64: not valid base64"));
  // EVP_DecodeBlock counts the bytes the padding stands for.
  size_t pad = in.ends_with("==") ? 2 : in.ends_with("=") ? 1 : 0;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

// ---- Client ----------------------------------------------------------------

struct Client::Impl {
  std::vector<std::string> endpoints;
  Timeouts t;
  size_t current = 0;  // the endpoint that answered last
  CurlPtr curl;

  // POSTs `body` to `path` on the endpoints in turn. An endpoint that does
  // not answer, or answers 5xx, is skipped; an etcd error (4xx) is final.
  Result<json> post(const std::string& path, const json& body, const char* op) {
    std::string payload = body.dump();
    std::string tried;
    for (size_t i = 0; i < endpoints.size(); ++i) {
      size_t idx = (current + i) % endpoints.size();
      const std::string& ep = endpoints[idx];
      CURL* c = curl.get();
      curl_easy_reset(c);
      set_common(c, t);
      std::string url = ep + path, resp;
      SlistPtr hdr(curl_slist_append(nullptr, "Content-Type: application/json"));
      char errbuf[CURL_ERROR_SIZE] = {};
      curl_easy_setopt(c, CURLOPT_URL, url.c_str());
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr.get());
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload.c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
      curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, t.request_ms);
      curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append_body);
      curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
      curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
      CURLcode rc = curl_easy_perform(c);
      long http = 0;
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
      if (rc != CURLE_OK) {
        tried += (tried.empty() ? "" : "; ") + ep + ": " +
                 (errbuf[0] ? std::string(errbuf) : curl_easy_strerror(rc));
        continue;
      }
      json j = json::parse(resp, nullptr, false);
      if (http >= 500 || j.is_discarded()) {
        tried += (tried.empty() ? "" : "; ") + ep + ": HTTP " + std::to_string(http) + " " +
                 (j.is_object() ? j.value("message", j.value("error", resp)) : resp.substr(0, 200));
        continue;
      }
      current = idx;
      if (http != 200) {
        std::string msg = j.is_object() ? j.value("message", j.value("error", "")) : "";
        return fail(Error(ErrorKind::kSystem, std::string("etcd ") + op + " at " + ep + ": HTTP " +
                                                  std::to_string(http) + ": " + msg));
      }
      return j;
    }
    return fail(Error(ErrorKind::kSystem,
                      std::string("etcd ") + op + ": no endpoint answered (" + tried + ")"));
  }
};

Client::Client(std::unique_ptr<Impl> i) : impl_(std::move(i)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

Result<Client> Client::make(std::vector<std::string> endpoints, Timeouts t) {
  if (endpoints.empty()) return fail(Error::invalid("etcd: no endpoints given"));
  for (const auto& e : endpoints)
    if (!e.starts_with("http://") && !e.starts_with("https://"))
      return fail(
          Error::invalid("etcd endpoint '" + e + "': expected http://HOST:PORT or https://"));
  global_init();
  auto impl = std::make_unique<Impl>();
  impl->endpoints = std::move(endpoints);
  impl->t = t;
  impl->curl.reset(curl_easy_init());
  if (!impl->curl) return fail(Error::sys("curl_easy_init", ENOMEM));
  return Client(std::move(impl));
}

const std::vector<std::string>& Client::endpoints() const { return impl_->endpoints; }

Result<RangeResult> Client::range(const std::string& key, bool prefix, int64_t revision) {
  return range_between(key, prefix ? prefix_end(key) : "", revision);
}

Result<RangeResult> Client::range_between(const std::string& key, const std::string& range_end,
                                          int64_t revision) {
  json req{{"key", base64_encode(key)}};
  if (!range_end.empty()) req["range_end"] = base64_encode(range_end);
  if (revision) req["revision"] = std::to_string(revision);
  auto j = impl_->post("/v3/kv/range", req, "range");
  if (!j) return fail(std::move(j.error()).wrap(key));
  RangeResult r;
  r.revision = num(j->value("header", json::object()), "revision");
  for (const auto& k : j->value("kvs", json::array())) {
    auto kv = kv_of(k);
    if (!kv) return fail(std::move(kv.error()).wrap("etcd range " + key));
    r.kvs.push_back(std::move(*kv));
  }
  return r;
}

Result<int64_t> Client::put(const std::string& key, const std::string& value, int64_t lease) {
  json req{{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  if (lease) req["lease"] = std::to_string(lease);
  auto j = impl_->post("/v3/kv/put", req, "put");
  if (!j) return fail(std::move(j.error()).wrap(key));
  return num(j->value("header", json::object()), "revision");
}

Result<int64_t> Client::del(const std::string& key, bool prefix) {
  json req{{"key", base64_encode(key)}};
  if (prefix) req["range_end"] = base64_encode(prefix_end(key));
  auto j = impl_->post("/v3/kv/deleterange", req, "delete");
  if (!j) return fail(std::move(j.error()).wrap(key));
  return num(*j, "deleted");
}

Result<TxnResult> Client::txn(const std::vector<Compare>& compares, const std::vector<Op>& success,
                              const std::vector<Op>& failure) {
  json req{{"compare", json::array()}, {"success", json::array()}, {"failure", json::array()}};
  for (const auto& c : compares) req["compare"].push_back(compare_json(c));
  for (const auto& o : success) req["success"].push_back(op_json(o));
  for (const auto& o : failure) req["failure"].push_back(op_json(o));
  auto j = impl_->post("/v3/kv/txn", req, "txn");
  if (!j) return fail(std::move(j.error()));
  return TxnResult{.succeeded = j->value("succeeded", false),
                   .revision = num(j->value("header", json::object()), "revision")};
}

Result<int64_t> Client::lease_grant(int64_t ttl_seconds) {
  auto j = impl_->post("/v3/lease/grant", {{"TTL", std::to_string(ttl_seconds)}}, "lease grant");
  if (!j) return fail(std::move(j.error()));
  if (j->contains("error") && !(*j)["error"].get<std::string>().empty())
    return fail(Error(ErrorKind::kSystem, "etcd lease grant: " + (*j)["error"].get<std::string>()));
  int64_t id = num(*j, "ID");
  if (id == 0) return fail(Error(ErrorKind::kSystem, "etcd lease grant: no lease ID in answer"));
  return id;
}

Result<int64_t> Client::lease_keepalive(int64_t id) {
  auto j = impl_->post("/v3/lease/keepalive", {{"ID", std::to_string(id)}}, "lease keepalive");
  if (!j) return fail(std::move(j.error()));
  // A stream of one message: {"result": {...}}.
  const json& r = j->contains("result") ? (*j)["result"] : *j;
  int64_t ttl = num(r, "TTL");
  if (ttl <= 0)
    return fail(Error(ErrorKind::kNotFound, "etcd lease " + std::to_string(id) + " expired"));
  return ttl;
}

Status Client::lease_revoke(int64_t id) {
  auto j = impl_->post("/v3/lease/revoke", {{"ID", std::to_string(id)}}, "lease revoke");
  if (!j) return fail(std::move(j.error()));
  return {};
}

Status Client::compact(int64_t revision) {
  auto j = impl_->post("/v3/kv/compaction",
                       {{"revision", std::to_string(revision)}, {"physical", true}}, "compact");
  if (!j) return fail(std::move(j.error()));
  return {};
}

// ---- Watcher ---------------------------------------------------------------

Watcher::Watcher(std::vector<std::string> endpoints, std::string key, std::string end, Timeouts t)
    : endpoints_(std::move(endpoints)), key_(std::move(key)), end_(std::move(end)), t_(t) {}

Result<std::unique_ptr<Watcher>> Watcher::start(std::vector<std::string> endpoints,
                                                std::string prefix, Timeouts t, int64_t from) {
  std::string end = prefix_end(prefix);
  return start_range(std::move(endpoints), std::move(prefix), std::move(end), t, from);
}

Result<std::unique_ptr<Watcher>> Watcher::start_range(std::vector<std::string> endpoints,
                                                      std::string key, std::string range_end,
                                                      Timeouts t, int64_t from) {
  if (endpoints.empty()) return fail(Error::invalid("etcd watch: no endpoints given"));
  global_init();
  std::unique_ptr<Watcher> w(
      new Watcher(std::move(endpoints), std::move(key), std::move(range_end), t));
  w->evfd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!w->evfd_) return fail(Error::sys("eventfd"));
  w->revision_ = from > 0 ? from - 1 : 0;
  w->thread_ = std::thread([p = w.get()] { p->loop(); });
  return w;
}

Watcher::~Watcher() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

std::vector<WatchEvent> Watcher::drain() {
  uint64_t n;
  (void)!::read(evfd_.get(), &n, sizeof n);
  std::lock_guard lk(mu_);
  std::vector<WatchEvent> out(std::make_move_iterator(queue_.begin()),
                              std::make_move_iterator(queue_.end()));
  queue_.clear();
  return out;
}

void Watcher::push(std::vector<WatchEvent> evs) {
  if (evs.empty()) return;
  {
    std::lock_guard lk(mu_);
    for (auto& e : evs) queue_.push_back(std::move(e));
  }
  uint64_t one = 1;
  (void)!::write(evfd_.get(), &one, sizeof one);
}

namespace {

struct StreamState {
  Watcher* self;
  std::string buf;
  std::function<bool(const json&)> on_message;  // false: stop the stream
  bool stop = false;
};

size_t stream_body(char* p, size_t size, size_t n, void* ud) {
  auto* s = static_cast<StreamState*>(ud);
  s->buf.append(p, size * n);
  // The gateway writes one JSON message per line.
  size_t nl;
  while ((nl = s->buf.find('\n')) != std::string::npos) {
    std::string line = s->buf.substr(0, nl);
    s->buf.erase(0, nl + 1);
    if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !s->on_message(j)) {
      s->stop = true;
      return 0;  // aborts the transfer
    }
  }
  return size * n;
}

}  // namespace

void Watcher::stream(const std::string& ep, int64_t from, bool& compacted) {
  CurlPtr curl(curl_easy_init());
  if (!curl) return;
  CURL* c = curl.get();
  set_common(c, t_);
  std::string url = ep + "/v3/watch";
  json req{{"create_request",
            {{"key", base64_encode(key_)},
             {"range_end", base64_encode(end_)},
             {"start_revision", std::to_string(from)}}}};
  std::string payload = req.dump();
  SlistPtr hdr(curl_slist_append(nullptr, "Content-Type: application/json"));
  StreamState st{.self = this};
  std::string error;
  st.on_message = [&](const json& j) -> bool {
    if (j.contains("error")) {
      error = j["error"].is_object() ? j["error"].value("message", j["error"].dump())
                                     : j["error"].dump();
      return false;
    }
    const json& r = j.contains("result") ? j["result"] : j;
    if (num(r, "compact_revision") > 0 || r.value("canceled", false)) {
      compacted = num(r, "compact_revision") > 0;
      error = r.value("cancel_reason", std::string("watch canceled"));
      return false;
    }
    if (r.value("created", false)) {
      if (!connected_.exchange(true))
        log::info("etcd watch connected", {{"endpoint", ep}, {"from", std::to_string(from)}});
    }
    std::vector<WatchEvent> evs;
    for (const auto& e : r.value("events", json::array())) {
      auto kv = kv_of(e.value("kv", json::object()));
      if (!kv) {
        log::warn("etcd watch: undecodable event ignored", {{"error", kv.error().str()}});
        continue;
      }
      WatchEvent ev;
      ev.kind =
          e.value("type", "PUT") == "DELETE" ? WatchEvent::Kind::kDelete : WatchEvent::Kind::kPut;
      ev.revision = kv->mod_revision;
      ev.kv = std::move(*kv);
      if (ev.revision > revision_) revision_ = ev.revision;
      evs.push_back(std::move(ev));
    }
    // A progress notification / header moves the revision forward too.
    if (evs.empty()) {
      int64_t hr = num(r.value("header", json::object()), "revision");
      if (hr > revision_ && !r.value("created", false)) revision_ = hr;
    }
    push(std::move(evs));
    return true;
  };
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr.get());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, stream_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(
      c, CURLOPT_XFERINFOFUNCTION,
      +[](void* ud, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> int {
        auto* w = static_cast<Watcher*>(ud);
        return w->stop_.load() || w->kick_.load() ? 1 : 0;
      });
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, this);
  CURLcode rc = curl_easy_perform(c);
  bool was = connected_.exchange(false);
  if (stop_.load()) return;
  if (kick_.exchange(false)) error = "reconnect requested";
  if (error.empty()) error = rc == CURLE_OK ? "stream ended" : curl_easy_strerror(rc);
  if (was || compacted)
    log::warn("etcd watch lost", {{"endpoint", ep}, {"error", error}});
  else
    log::debug("etcd watch failed", {{"endpoint", ep}, {"error", error}});
}

void Watcher::loop() {
  auto client = Client::make(endpoints_, t_);
  if (!client) {
    log::error("etcd watch cannot start", {{"error", client.error().str()}});
    return;
  }
  bool need_reset = revision_ == 0, compacted = false;
  size_t ep = 0;
  auto pause = [this](int ms) {
    for (int i = 0; i < ms / 50 && !stop_.load(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  };
  while (!stop_.load()) {
    if (need_reset) {
      auto r = client->range_between(key_, end_);
      if (!r) {
        log::debug("etcd watch: read failed", {{"error", r.error().str()}});
        pause(500);
        continue;
      }
      WatchEvent ev;
      ev.kind = WatchEvent::Kind::kReset;
      ev.snapshot = std::move(r->kvs);
      ev.compacted = compacted;
      ev.revision = r->revision;
      revision_ = r->revision;
      if (compacted) compactions_.fetch_add(1);
      std::vector<WatchEvent> one;
      one.push_back(std::move(ev));
      push(std::move(one));
      need_reset = compacted = false;
    }
    bool was_compacted = false;
    stream(endpoints_[ep % endpoints_.size()], revision_ + 1, was_compacted);
    if (stop_.load()) break;
    if (was_compacted) {
      log::warn("etcd watch: revision compacted; must resync with a full read",
                {{"revision", std::to_string(revision_ + 1)}});
      need_reset = compacted = true;
      continue;
    }
    ++ep;  // the next endpoint
    pause(200);
  }
}

}  // namespace zw::cluster
