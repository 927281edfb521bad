#!/usr/bin/env python3
"""Ingest throughput of POST /api/v1/usage/events: events/second, new and retried.

Starts `tenantplane serve` itself on 127.0.0.1 (embedded SQLite catalog, or `--catalog
postgres://…` for a durable PostgreSQL), creates tenants, then posts batches of custom meter
events with unique idempotency keys from a few connections, then the same batches again
(every event a duplicate). Bounded in count and time; loopback only; standard library only.

    python3 bench/usage_events.py --bin target/release/tenantplane --batches 200 --size 500
"""

import argparse
import http.client
import json
import os
import random
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--catalog", default="")
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=300.0, help="hard stop per phase, seconds")
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
    env = dict(os.environ, RUST_LOG="warn", TENANTPLANE__LIMITS__PER_IP_PER_MINUTE="0")
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
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
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        run = random.randrange(1 << 30)
        slugs = [f"ingest-{run % 100000:05d}-{i:04d}" for i in range(args.tenants)]
        for s in slugs:
            c.request("POST", "/api/v1/tenants", body=json.dumps({"slug": s, "display_name": s, "profile": "company"}),
                      headers=headers)
            r = c.getresponse()
            r.read()
            assert r.status == 201, r.status
        rng = random.Random(7)
        batches = []
        for b in range(args.batches):
            batches.append(json.dumps({"events": [
                {"tenant": rng.choice(slugs), "meter": rng.choice(["inference-tokens", "gpu-seconds", "calls"]),
                 "quantity": rng.randrange(1, 5000), "idempotency_key": f"{run}-{b}-{i}"}
                for i in range(args.size)]}))

        def phase(expect_new):
            it = iter(batches)
            lock = threading.Lock()
            counts = {"recorded": 0, "duplicates": 0, "errors": 0}
            lat = []
            stop_at = time.time() + args.timeout

            def worker():
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                while time.time() < stop_at:
                    with lock:
                        body = next(it, None)
                    if body is None:
                        return
                    t0 = time.perf_counter()
                    conn.request("POST", "/api/v1/usage/events", body=body, headers=headers)
                    r = conn.getresponse()
                    payload = r.read()
                    dt = time.perf_counter() - t0
                    with lock:
                        lat.append(dt)
                        if r.status != 200:
                            counts["errors"] += 1
                        else:
                            v = json.loads(payload)
                            counts["recorded"] += v["recorded"]
                            counts["duplicates"] += v["duplicates"]

            t0 = time.perf_counter()
            threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
            lat.sort()
            pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0
            events = counts["recorded"] + counts["duplicates"]
            return {
                "phase": "new" if expect_new else "retried",
                **counts,
                "seconds": round(elapsed, 2),
                "events_per_second": round(events / elapsed) if elapsed else 0,
                "batch_ms_p50": round(pct(0.5), 1),
                "batch_ms_p99": round(pct(0.99), 1),
            }

        out = [phase(True), phase(False)]
        print(json.dumps({"catalog": "postgres" if args.catalog else "sqlite", "batch_size": args.size,
                          "concurrency": args.concurrency, "phases": out}, indent=2))
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()


if __name__ == "__main__":
    main()
