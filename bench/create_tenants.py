#!/usr/bin/env python3
"""Create N tenants through the control-plane API and report tenants/second and server RSS.

Starts `tenantplane serve` itself on 127.0.0.1 with a fresh data directory (embedded SQLite
catalog) or with `--catalog postgres://…`, sends bounded traffic to loopback only, and stops
the server when done. Standard library only.

    python3 bench/create_tenants.py --bin target/release/tenantplane --count 10000
    python3 bench/create_tenants.py --bin … --catalog postgres://postgres@127.0.0.1/tp_bench
"""

import argparse
import http.client
import json
import os
import socket
import subprocess
import tempfile
import threading
import time

TOKEN = "bench-token-0123456789abcdefghijklmnop"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--catalog", default="")
    ap.add_argument("--timeout", type=float, default=600.0, help="hard stop, seconds")
    args = ap.parse_args()

    data = tempfile.mkdtemp(prefix="tp-bench-")
    tokfile = os.path.join(data, "token")
    with open(tokfile, "w") as f:
        f.write(TOKEN)
    port = free_port()
    cmd = [args.bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(data, "d"),
           "--bootstrap-token-file", tokfile]
    if args.catalog:
        cmd += ["--catalog", args.catalog]
    # The load comes from one address: lift the per-IP limit (1,000/min by default).
    env = dict(os.environ, RUST_LOG="warn", TENANTPLANE__LIMITS__PER_IP_PER_MINUTE="0")
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("server did not become ready")
            time.sleep(0.1)
        rss_start = rss_kib(srv.pid)

        counter = iter(range(args.count))
        lock = threading.Lock()
        errors = []
        latencies = []
        stop_at = time.time() + args.timeout

        def worker():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while time.time() < stop_at:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = json.dumps({"slug": f"bench-{i:06d}", "display_name": f"Bench tenant {i}",
                                   "profile": "company",
                                   "custom_domains": [f"app.bench-{i:06d}.example.org"]})
                t0 = time.perf_counter()
                conn.request("POST", "/api/v1/tenants", body=body,
                             headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
                r = conn.getresponse()
                r.read()
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if r.status != 201:
                        errors.append(r.status)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        time.sleep(2)  # let the index poller settle, then measure idle memory
        rss_idle = rss_kib(srv.pid)
        lat = sorted(latencies)
        pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0
        # Resolution sanity check against the freshly created tenants.
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/api/tenant", headers={"Host": f"app.bench-{(len(lat) - 1):06d}.example.org"})
        resolved = c.getresponse().status
        print(json.dumps({
            "catalog": "postgres" if args.catalog else "sqlite",
            "created": len(lat) - len(errors),
            "errors": len(errors),
            "concurrency": args.concurrency,
            "seconds": round(elapsed, 2),
            "tenants_per_second": round((len(lat) - len(errors)) / elapsed, 1) if elapsed else 0,
            "latency_ms_p50": round(pct(0.50), 2),
            "latency_ms_p95": round(pct(0.95), 2),
            "latency_ms_p99": round(pct(0.99), 2),
            "rss_mib_start": round(rss_start / 1024, 1),
            "rss_mib_idle_after": round(rss_idle / 1024, 1),
            "last_tenant_resolves": resolved,
        }, indent=2))
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()


if __name__ == "__main__":
    main()
