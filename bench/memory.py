#!/usr/bin/env python3
"""Server memory as tenants are created, sign in, load records and send large bodies.

Starts `tenantplane serve` (embedded SQLite, fresh data directory) on 127.0.0.1, sends
bounded traffic to loopback only, and prints RSS and anonymous RSS (from /proc) at each
step as one Markdown table:

  idle → +N tenants without an admin → +N tenants with an admin (one Argon2id hash each)
  → each of those admins logs in and changes the one-time password → quiet (idle tenants
  closed) → the Synthea sample loaded into one hospital → a burst of maximum-size bodies
  → quiet again.

    python3 bench/memory.py --bin target/release/tenantplane --plain 200 --admins 1500

Standard library only. Stops the server when done (or after --timeout seconds).
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import socket
import subprocess
import tempfile
import time

TOKEN = "bench-token-0123456789abcdefghijklmnop"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mem(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "Threads"):
                out[k] = int(v.split()[0])
    return out


class Api:
    def __init__(self, port):
        self.port = port

    def call(self, method, path, body=None, token=TOKEN, ctype="application/json", raw=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if raw is not None:
            data = raw
            headers["Content-Type"] = ctype
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = ctype
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        text = r.read()
        c.close()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, None


def create(api, slug, admin):
    body = {"slug": slug, "display_name": f"Hospital {slug}", "profile": "hospital"}
    if admin:
        body["admin_email"] = f"admin@{slug}.example"
    st, v = api.call("POST", "/api/v1/tenants", body)
    if st != 201:
        raise RuntimeError(f"create {slug}: {st} {v}")
    if admin:
        return v["initial_admin"]["one_time_password"]
    return None


def sign_in(api, slug, otp):
    st, v = api.call("POST", f"/t/{slug}/auth/login",
                     {"email": f"admin@{slug}.example", "password": otp}, token=None)
    if st != 200:
        raise RuntimeError(f"login {slug}: {st} {v}")
    st, v = api.call("POST", f"/t/{slug}/auth/password",
                     {"current_password": otp, "new_password": "a long and new passphrase"},
                     token=v["access_token"])
    if st != 200:
        raise RuntimeError(f"password {slug}: {st} {v}")
    return v["access_token"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--plain", type=int, default=200, help="tenants created without an admin")
    ap.add_argument("--admins", type=int, default=1500, help="tenants with an admin who signs in")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--burst", type=int, default=64, help="maximum-size bodies in the burst")
    ap.add_argument("--quiet-secs", type=int, default=75, help="wait for idle tenants to close")
    ap.add_argument("--timeout", type=float, default=1500.0, help="hard stop, seconds")
    args = ap.parse_args()

    data = tempfile.mkdtemp(prefix="tp-mem-")
    tokfile = os.path.join(data, "token")
    with open(tokfile, "w") as f:
        f.write(TOKEN)
    port = free_port()
    cmd = [args.bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir",
           os.path.join(data, "d"), "--bootstrap-token-file", tokfile]
    env = dict(os.environ, RUST_LOG="warn", TENANTPLANE__LIMITS__PER_IP_PER_MINUTE="0",
               TENANTPLANE__LIMITS__LOGIN_PER_IP_PER_MINUTE="1000000")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + args.timeout
    api = Api(port)
    rows = []

    def record(step):
        m = mem(proc.pid)
        rows.append((step, m["VmRSS"], m["RssAnon"], m["Threads"]))
        print(f"{step:<58} RSS {m['VmRSS'] / 1024:8.1f} MiB  anon {m['RssAnon'] / 1024:8.1f} MiB"
              f"  threads {m['Threads']}", flush=True)

    try:
        for _ in range(300):
            try:
                if api.call("GET", "/healthz", token=None)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        time.sleep(3)  # schema validators warm up at start
        record("idle 3 s after start")
        time.sleep(37)
        record("idle 40 s after start (start-up Argon2 memory freed)")

        pool = concurrent.futures.ThreadPoolExecutor(args.concurrency)
        list(pool.map(lambda i: create(api, f"plain-{i:05d}", False), range(args.plain)))
        record(f"+{args.plain} tenants without an admin")

        slugs = [f"adm-{i:05d}" for i in range(args.admins)]
        otps = list(pool.map(lambda s: create(api, s, True), slugs))
        record(f"+{args.admins} tenants with an admin (Argon2id each)")
        assert time.time() < deadline, "timeout"

        tokens = list(pool.map(lambda p: sign_in(api, p[0], p[1]), zip(slugs, otps)))
        record(f"{args.admins} admins logged in and changed the password")
        assert time.time() < deadline, "timeout"

        time.sleep(args.quiet_secs)
        record(f"quiet {args.quiet_secs} s (idle tenant stores closed)")

        # The shipped Synthea sample into one hospital, through the operator import.
        t0 = time.time()
        subprocess.run([args.bin, "fhir", "load", "--tenant", slugs[0]],
                       env=dict(os.environ, TENANTPLANE_SERVER=f"http://127.0.0.1:{port}",
                                TENANTPLANE_TOKEN=TOKEN),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        record(f"Synthea sample loaded into one hospital ({time.time() - t0:.0f} s)")

        # A burst of maximum-size (1 MiB) FHIR bodies, refused by schema validation after
        # being read whole, spread over the signed-in tenants.
        body = json.dumps({"resourceType": "Patient",
                           "name": [{"family": "x" * (1024 * 1024 - 200)}],
                           "gender": "not-a-gender"}).encode()

        def big(i):
            slug, tok = slugs[i % len(slugs)], tokens[i % len(tokens)]
            return api.call("POST", f"/t/{slug}/fhir/Patient", token=tok,
                            ctype="application/fhir+json", raw=body)[0]

        codes = list(concurrent.futures.ThreadPoolExecutor(16).map(big, range(args.burst)))
        record(f"burst of {args.burst} bodies of 1 MiB (statuses {sorted(set(codes))})")
        time.sleep(args.quiet_secs)
        record(f"quiet {args.quiet_secs} s after the burst")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

    print()
    print("| step | RSS (MiB) | anonymous RSS (MiB) | threads |")
    print("|---|---|---|---|")
    for step, rss, anon, threads in rows:
        print(f"| {step} | {rss / 1024:.1f} | {anon / 1024:.1f} | {threads} |")


if __name__ == "__main__":
    main()
