#!/usr/bin/python3
"""Cluster-mode scale simulation (issue 8): simulated hosts publish endpoint records in etcd
under their leases, exactly as the contract lays them out, while one or more REAL zonewall
daemons (started by scripts/bench/cluster.sh) watch them. Measures, through the daemons' own
host records (PFX/hosts/<host>, rewritten after every apply) and /proc:

  initial sync    all HOSTS x VMS records written -> every daemon reports them all
  policy change   `zonewall apply --cluster` started -> every daemon reports the revision
  migration       a record moves host: deleted under A -> reflected; put under B -> reflected
  host death      a simulated host's lease revoked (its VMS records go) -> reflected
  daemon cost     RSS (VmRSS, VmHWM) and CPU time (utime+stime) at each stage

Talks to etcd's v3 JSON gateway with the standard library only (http.client), so Debian's
/usr/bin/python3 runs it. Prints a Markdown table and writes a TSV (--out).
"""
import argparse
import base64
import datetime
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

TICK = os.sysconf("SC_CLK_TCK")


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s):
    return base64.b64decode(s).decode()


def prefix_end(p):
    b = bytearray(p.encode())
    b[-1] += 1
    return bytes(b)


class Etcd:
    """One keep-alive connection to the JSON gateway; not thread-safe (one per thread)."""

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.c = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def post(self, path, body):
        for attempt in range(2):
            try:
                self.c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                r = self.c.getresponse()
                data = json.loads(r.read() or b"{}")
                if r.status != 200:
                    raise RuntimeError("etcd %s: HTTP %d: %s" % (path, r.status, data))
                return data
            except (http.client.HTTPException, ConnectionError):
                if attempt:
                    raise
                self.c.close()
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def grant(self, ttl):
        return self.post("/v3/lease/grant", {"TTL": ttl})["ID"]

    def keepalive(self, lease):
        return self.post("/v3/lease/keepalive", {"ID": lease})

    def revoke(self, lease):
        return self.post("/v3/lease/revoke", {"ID": lease})

    def txn(self, ops):
        r = self.post("/v3/kv/txn", {"success": ops})
        return int(r["header"]["revision"])

    def range_prefix(self, p, keys_only=False):
        r = self.post("/v3/kv/range", {"key": b64(p), "range_end": b64(prefix_end(p)), "keys_only": keys_only})
        return r.get("kvs", [])


def put_op(key, value, lease=None):
    op = {"key": b64(key), "value": b64(value)}
    if lease:
        op["lease"] = lease
    return {"requestPut": op}


def del_op(key):
    return {"requestDeleteRange": {"key": b64(key)}}


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


ZONES = ["web", "db", "admin"]


def sim_host(i):
    return "sim-%03d" % i


def vm_record(i, j, host):
    """VM j first started on simulated host i; `host` is where it runs now."""
    name = "%s-s%03d-%03d" % (ZONES[j % 3], i, j)
    uuid = "5e0%05d-0000-4000-8000-%012d" % (i, j)
    mac = "52:54:01:%02x:%02x:%02x" % (i >> 8, i & 255, j & 255)
    v4 = "10.%d.%d.%d" % (200 + (i >> 8), i & 255, j + 1)
    v6 = "fd20::%x:%x" % (i, j + 1)
    rec = {"host": host, "uuid": uuid, "name": name, "zone_tag": None,
           "interfaces": [{"mac": mac, "addrs": [v4, v6], "allowed": []}],
           "state": "running", "time": now_rfc3339()}
    return uuid, json.dumps(rec, separators=(",", ":"))


class HostWatch(threading.Thread):
    """Watches PFX/hosts/ and keeps the latest record of each host with its arrival time."""

    def __init__(self, url, pfx):
        super().__init__(daemon=True)
        self.url, self.pfx = url, pfx + "/hosts/"
        self.cv = threading.Condition()
        self.hosts = {}  # host -> (arrival time, record dict)
        self.ready = threading.Event()

    def run(self):
        e = Etcd(self.url)
        for kv in e.range_prefix(self.pfx):
            self.update(unb64(kv["key"]), unb64(kv["value"]), time.time())
        u = urllib.parse.urlparse(self.url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=None)
        c.request("POST", "/v3/watch", json.dumps({"create_request": {
            "key": b64(self.pfx), "range_end": b64(prefix_end(self.pfx))}}))
        r = c.getresponse()
        self.ready.set()
        while True:
            line = r.readline()
            if not line:
                return
            t = time.time()
            for ev in json.loads(line).get("result", {}).get("events", []):
                kv = ev["kv"]
                if ev.get("type") == "DELETE":
                    with self.cv:
                        self.hosts.pop(unb64(kv["key"])[len(self.pfx):], None)
                        self.cv.notify_all()
                else:
                    self.update(unb64(kv["key"]), unb64(kv.get("value", "")), t)

    def update(self, key, value, t):
        try:
            rec = json.loads(value)
        except ValueError:
            return
        with self.cv:
            self.hosts[key[len(self.pfx):]] = (t, rec)
            self.cv.notify_all()

    def wait(self, hosts, cond, timeout):
        """Waits until cond(record) holds for every host; returns the latest arrival time."""
        deadline = time.time() + timeout
        with self.cv:
            while True:
                got = [self.hosts.get(h) for h in hosts]
                if all(g and cond(g[1]) for g in got):
                    return max(g[0] for g in got)
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError("hosts %s: condition not met in %.0f s; last: %s" % (
                        hosts, timeout, {h: (g[1] if g else None) for h, g in zip(hosts, got)}))
                self.cv.wait(left)


def proc_stats(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
    rss = hwm = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return cpu, rss / 1024, hwm / 1024


class Sim:
    def __init__(self, a):
        self.a = a
        self.e = Etcd(a.etcd)
        self.pfx = a.prefix
        self.daemons = {}  # host -> pid
        for d in a.daemon:
            h, pid = d.split("=")
            self.daemons[h] = int(pid)
        self.real = sorted(self.daemons)
        self.leases = {}
        self.rows = []  # (section, metric, value, unit, note)
        self.total = a.hosts * a.vms
        # Every real daemon also sees the other real daemons' VMs as remote.
        self.extra = (len(self.real) - 1) * a.real_vms
        self.stop = threading.Event()

    def row(self, section, metric, value, unit, note=""):
        self.rows.append((section, metric, value, unit, note))
        print("[cluster-sim] %-14s %-44s %10s %-4s %s" % (section, metric, value, unit, note), file=sys.stderr, flush=True)

    def stats(self):
        return {h: proc_stats(pid) for h, pid in self.daemons.items()}

    def record_stats(self, section, before, after, what="CPU time", rss=True):
        for h in self.real:
            self.row(section, "%s %s" % (h, what), "%.2f" % (after[h][0] - before[h][0]), "s")
            if rss:
                self.row(section, "%s RSS after" % h, "%.1f" % after[h][1], "MiB", "peak %.1f MiB" % after[h][2])

    def key(self, host, uuid):
        return "%s/endpoints/%s/%s" % (self.pfx, host, uuid)

    def remote_seen(self, n):
        return lambda r: r.get("remote_endpoints") == n + self.extra

    def publish(self):
        e, a = self.e, self.a
        t0 = time.time()
        for i in range(a.hosts):
            h = sim_host(i)
            lease = e.grant(a.ttl)
            self.leases[h] = lease
            ops = []
            for j in range(a.vms):
                uuid, rec = vm_record(i, j, h)
                ops.append(put_op(self.key(h, uuid), rec, lease))
                if len(ops) == 100:  # etcd's --max-txn-ops is 128
                    e.txn(ops)
                    ops = []
            if ops:
                e.txn(ops)
        return t0, time.time()

    def keepalive_loop(self):
        e = Etcd(self.a.etcd)
        period = self.a.ttl / 3
        while not self.stop.wait(period):
            for lease in list(self.leases.values()):
                try:
                    e.keepalive(lease)
                except Exception as ex:  # noqa: BLE001 -- report and keep the others alive
                    print("[cluster-sim] keepalive failed: %s" % ex, file=sys.stderr)

    def apply(self, policy):
        t0 = time.time()
        out = subprocess.run([self.a.zonewall, "--json", "apply", "--cluster", self.a.etcd,
                              "--cluster-prefix", self.pfx, policy],
                             capture_output=True, text=True)
        t1 = time.time()
        if out.returncode != 0:
            raise RuntimeError("zonewall apply --cluster %s exited %d: %s%s" % (
                policy, out.returncode, out.stdout, out.stderr))
        return t0, t1, json.loads(out.stdout)["revision"]

    def run(self):
        a, w = self.a, HostWatch(self.a.etcd, self.pfx)
        w.start()
        if not w.ready.wait(10):
            raise RuntimeError("could not watch %s/hosts/" % self.pfx)
        sec = "setup"
        self.row(sec, "simulated hosts x VMs", "%dx%d" % (a.hosts, a.vms), "", "%d endpoint records, %d addresses" % (self.total, 2 * self.total))
        self.row(sec, "real daemons", str(len(self.real)), "", " ".join(self.real))
        # The daemons run and enforce the first policy before the simulated hosts appear.
        w.wait(self.real, lambda r: r.get("policy_revision", 0) > 0, 60)
        base = self.stats()
        for h in self.real:
            self.row(sec, "%s RSS, no remote endpoints" % h, "%.1f" % base[h][1], "MiB", "peak %.1f MiB" % base[h][2])

        sec = "initial sync"
        t0, t1 = self.publish()
        self.row(sec, "write %d records (%d txns)" % (self.total, a.hosts * -(-a.vms // 100)), "%.0f" % ((t1 - t0) * 1000), "ms")
        ka = threading.Thread(target=self.keepalive_loop, daemon=True)
        ka.start()
        t2 = w.wait(self.real, self.remote_seen(self.total), a.timeout)
        self.row(sec, "first write -> all daemons report %d remote" % self.total, "%.0f" % ((t2 - t0) * 1000), "ms")
        self.row(sec, "last write -> all daemons report them", "%.0f" % ((t2 - t1) * 1000), "ms")
        after = self.stats()
        self.record_stats(sec, base, after, "CPU time for the sync")

        sec = "steady"
        before = after
        time.sleep(a.idle)
        after = self.stats()
        for h in self.real:
            self.row(sec, "%s CPU over %d s idle (%d leases kept alive)" % (h, a.idle, a.hosts),
                     "%.2f" % (after[h][0] - before[h][0]), "s")

        sec = "policy change"
        before, lat, cmd = after, [], []
        for k in range(a.rounds):
            policy = a.policy_b if k % 2 == 0 else a.policy_a
            t0, t1, rev = self.apply(policy)
            t2 = w.wait(self.real, lambda r, rev=rev: r.get("policy_revision") == rev, a.timeout)
            lat.append((t2 - t0) * 1000)
            cmd.append((t1 - t0) * 1000)
        after = self.stats()
        self.summary(sec, "apply --cluster started -> all daemons enforce", lat)
        self.summary(sec, "apply --cluster command (validate, compile, txn)", cmd)
        for h in self.real:
            self.row(sec, "%s CPU per change" % h, "%.2f" % ((after[h][0] - before[h][0]) / a.rounds), "s")

        sec = "migration"
        before, gone, back = after, [], []
        for k in range(a.rounds):
            i, j = (7 * k) % a.hosts, (13 * k) % a.vms
            src, dst = sim_host(i), sim_host((i + 1) % a.hosts)
            uuid, _ = vm_record(i, j, src)
            t0 = time.time()
            self.e.txn([del_op(self.key(src, uuid))])
            t1 = w.wait(self.real, self.remote_seen(self.total - 1), a.timeout)
            _, rec = vm_record(i, j, dst)
            t2 = time.time()
            self.e.txn([put_op(self.key(dst, uuid), rec, self.leases[dst])])
            t3 = w.wait(self.real, self.remote_seen(self.total), a.timeout)
            gone.append((t1 - t0) * 1000)
            back.append((t3 - t2) * 1000)
            # Move it home for the next round (same key layout as at the start).
            self.e.txn([del_op(self.key(dst, uuid))])
            w.wait(self.real, self.remote_seen(self.total - 1), a.timeout)
            _, rec = vm_record(i, j, src)
            self.e.txn([put_op(self.key(src, uuid), rec, self.leases[src])])
            w.wait(self.real, self.remote_seen(self.total), a.timeout)
        after = self.stats()
        self.summary(sec, "record deleted on A -> all daemons reflect", gone)
        self.summary(sec, "record put on B -> all daemons reflect", back)
        for h in self.real:
            self.row(sec, "%s CPU per record change" % h, "%.3f" % ((after[h][0] - before[h][0]) / (4 * a.rounds)), "s")

        sec = "host death"
        before = after
        victim = sim_host(a.hosts - 1)
        t0 = time.time()
        self.e.revoke(self.leases.pop(victim))
        t1 = w.wait(self.real, self.remote_seen(self.total - a.vms), a.timeout)
        self.row(sec, "lease revoked (%d records) -> all daemons reflect" % a.vms, "%.0f" % ((t1 - t0) * 1000), "ms")
        after = self.stats()
        self.record_stats(sec, before, after, "CPU time for the removal")
        self.record_stats(sec, base, after, "CPU time, whole run", rss=False)
        self.stop.set()
        return self.rows

    def summary(self, sec, what, xs):
        self.row(sec, what + " (median)", "%.0f" % statistics.median(xs), "ms",
                 "n=%d, min %.0f, max %.0f" % (len(xs), min(xs), max(xs)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--etcd", required=True, help="one client URL")
    ap.add_argument("--prefix", default="/zonewall")
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--vms", type=int, default=100)
    ap.add_argument("--ttl", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--idle", type=int, default=10, help="seconds of steady state measured")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--daemon", action="append", default=[], help="HOST=PID of a real daemon (repeat)")
    ap.add_argument("--real-vms", type=int, default=1, help="local VMs of each real daemon")
    ap.add_argument("--zonewall", required=True)
    ap.add_argument("--policy-a", required=True, help="the policy the daemons already enforce")
    ap.add_argument("--policy-b", required=True, help="the alternative applied in turns")
    ap.add_argument("--out", help="TSV of every figure")
    a = ap.parse_args()
    if not a.daemon:
        ap.error("at least one --daemon HOST=PID")
    if a.hosts > 4096 or a.vms > 250:
        ap.error("at most 4096 hosts and 250 VMs per host (address plan 10.200-215.x.y)")
    rows = Sim(a).run()
    if a.out:
        with open(a.out, "w") as f:
            f.write("section\tmetric\tvalue\tunit\tnote\n")
            for r in rows:
                f.write("\t".join(str(x) for x in r) + "\n")
    print("| section | metric | value | note |\n|---|---|---:|---|")
    for sec, metric, value, unit, note in rows:
        print("| %s | %s | %s %s | %s |" % (sec, metric, value, unit, note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
