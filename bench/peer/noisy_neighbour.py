#!/usr/bin/env python3
"""No noisy neighbour (issue 14): hospital B's latency alone and while hospital A floods.

On the peer's durable PostgreSQL 15 (``../shared/peers/django-tenants/setup.sh``, port
$PGPORT, default 55432 — started by ``side_by_side.py`` or by ``--setup``), for each mode
(sqlite, pg-schema, pg-shared) a fresh release ``tenantplane serve`` holds two tenants:

- A on plan ``enterprise`` (within its plan: 60,000 requests/min) with ``--a-patients``
  patients, flooding with heavy searches (``Patient?gender=female&_count=100&_total=accurate``,
  60-80 ms each at 3,000 patients)
  from wrk, 2 threads x 32 connections;
- B on plan ``large`` with 200 patients, sending ``Patient?_count=20`` open loop at ``--rate``
  requests/s (each request sent at its scheduled time on its own kept-alive connection;
  latency counted from the scheduled time, so queueing is not hidden).

B runs ``--secs`` alone, then the same while A floods. Prints the table of the issue (B p50 /
p99 alone and under the flood, the p99 ratio) with A's throughput and refusals. Traffic goes
to 127.0.0.1 only; every loop is bounded.
"""

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import side_by_side as sb  # noqa: E402

HEAVY = "/fhir/Patient?gender=female&_count=100&_total=accurate"
LIGHT = "/fhir/Patient?_count=20"


def tenant(slug, plan, mode, patients):
    st, v = sb.http("POST", "/api/v1/tenants", {
        "slug": slug, "display_name": f"Hospital {slug}", "profile": "hospital", "plan": plan,
        "isolation": mode, "admin_email": f"admin@{slug}.example"}, token=sb.TOKEN)
    if st != 201:
        sys.exit(f"creating {slug}: {st} {v}")
    host = f"{slug}.{sb.BASE}"
    otp = v["initial_admin"]["one_time_password"]
    st, v = sb.http("POST", "/auth/login", {"email": f"admin@{slug}.example", "password": otp}, host=host)
    st, v = sb.http("POST", "/auth/password", {"current_password": otp,
                                               "new_password": "a long bench passphrase"},
                    host=host, token=v["access_token"])
    token = v["access_token"]
    left = patients
    while left > 0:
        n = min(left, 500)
        st, v = sb.http("POST", "/fhir", sb.patient_bundle(n, slug), host=host, token=token,
                        ctype="application/fhir+json", timeout=300)
        if st != 200:
            sys.exit(f"patients {slug}: {st} {str(v)[:300]}")
        left -= n
    return host, token


def open_loop(host, token, rate, secs):
    """Sends LIGHT at `rate`/s for `secs`; returns latencies (ms) from each scheduled time,
    and the number of non-200 answers."""
    local = threading.local()
    lat, bad = [], [0]
    lock = threading.Lock()

    def one(at):
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = http.client.HTTPConnection("127.0.0.1", sb.PORT, timeout=30)
        try:
            c.request("GET", LIGHT, headers={"Host": host, "Authorization": f"Bearer {token}"})
            r = c.getresponse()
            r.read()
            ok = r.status == 200
        except OSError:
            local.c = None
            ok = False
        ms = (time.monotonic() - at) * 1000
        with lock:
            lat.append(ms)
            if not ok:
                bad[0] += 1

    n = int(rate * secs)
    t0 = time.monotonic() + 0.2
    with ThreadPoolExecutor(max_workers=32) as ex:
        for i in range(n):
            at = t0 + i / rate
            # Hand each request over shortly before its time (bounded queue of work).
            while at - time.monotonic() > 0.05:
                time.sleep(0.01)
            ex.submit(one, at)
    return sorted(lat), bad[0]


def pct(xs, p):
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float("nan")


def run_mode(a, mode):
    for db in ("tp_catalog", "tp_data"):
        sb.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        sb.psql(f"CREATE DATABASE {db}")
    workdir = tempfile.mkdtemp(prefix="tp-noisy-")
    server = sb.start_server(a.binary, workdir, mode, None)
    try:
        # A's flood stays within its plan: no request rate limit in the way, only the
        # shares (its plan's concurrent expensive requests, its share of the store).
        st, plans = sb.http("GET", "/api/v1/plans", token=sb.TOKEN)
        q = next(p for p in plans["items"] if p["name"] == "enterprise")["quotas"]
        q.update(requests_per_minute=100_000_000, requests_per_month=10**15)
        if os.environ.get("A_HEAVY"):
            q["max_concurrent_heavy"] = int(os.environ["A_HEAVY"])
        st, v = sb.http("PATCH", "/api/v1/plans/enterprise", {"quotas": q}, token=sb.TOKEN)
        if st != 200:
            sys.exit(f"plan: {st} {v}")
        host_a, tok_a = tenant("hospital-a", "enterprise", mode, a.a_patients)
        host_b, tok_b = tenant("hospital-b", "large", mode, 200)
        tokens_a = os.path.join(workdir, "tokens-a")
        with open(tokens_a, "w") as f:
            f.write(f"{host_a} {tok_a}\n")
        open_loop(host_b, tok_b, a.rate, 3)  # warm-up
        alone, bad_alone = open_loop(host_b, tok_b, a.rate, a.secs)
        out = {}
        flood = threading.Thread(target=lambda: out.setdefault(
            "a", sb.wrk(tokens_a, "get", a.secs + 4, 2, 32, get_path=HEAVY)))
        flood.start()
        time.sleep(2)
        busy, bad_busy = open_loop(host_b, tok_b, a.rate, a.secs)
        flood.join()
        return {"mode": mode, "alone": alone, "busy": busy, "bad": bad_alone + bad_busy,
                "a": out.get("a", {})}
    finally:
        sb.stop_server(server)
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.expanduser("~/.cache/tenantplane-target/release/tenantplane"))
    ap.add_argument("--modes", default="sqlite,pg-schema,pg-shared")
    ap.add_argument("--rate", type=float, default=40)
    ap.add_argument("--secs", type=int, default=20)
    ap.add_argument("--a-patients", type=int, default=3000)
    ap.add_argument("--setup", action="store_true", help="run the peer's setup.sh first")
    ap.add_argument("--out", default="/tmp/tp-noisy.json")
    a = ap.parse_args()
    if a.rate > 200 or a.secs > 120 or a.a_patients > 20000:
        sys.exit("bounded: at most 200 requests/s, 120 s, 20,000 patients")
    if a.setup:
        sb.sh(["bash", os.path.join(sb.PEER, "setup.sh")], stdout=subprocess.DEVNULL)
    rows = [run_mode(a, m) for m in a.modes.split(",")]
    with open(a.out, "w") as f:
        json.dump(rows, f)
    print("| mode | B alone p50 / p99 | B while A floods p50 / p99 | p99 ratio | A req/s (non-2xx) | B errors |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        al, bu, A = r["alone"], r["busy"], r["a"]
        print(f"| {r['mode']} | {pct(al, 50):.1f} / {pct(al, 99):.1f} ms | {pct(bu, 50):.1f} / {pct(bu, 99):.1f} ms "
              f"| {pct(bu, 99) / pct(al, 99):.2f}x | {A.get('rps', 0):.0f} ({A.get('err_status', 0)}) | {r['bad']} |")


if __name__ == "__main__":
    main()
