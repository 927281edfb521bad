#!/usr/bin/env python3
"""Tenantplane beside the django-tenants peer, on one durable PostgreSQL (issue 14).

The peer's benchmark (``../shared/peers/django-tenants``: ``setup.sh`` starts PostgreSQL 15 with
default settings — fsync on — on 127.0.0.1:$PGPORT, default 55432) defines the workload: 100
tenants x 50 patients, wrk 2 threads / 32 connections / 20 s, a random tenant ``Host`` per
request, ``GET`` 20 patients and ``POST`` one. This script runs the same workload against a
release ``tenantplane serve`` whose catalog and tenant data live in that same cluster:

  1. the peer's ``setup.sh`` (cluster, venv, wrk) unless ``--no-setup``;
  2. fresh databases ``tp_catalog`` and ``tp_data`` in the cluster, a server on 127.0.0.1:18080;
  3. ``--tenants`` tenants in ``--mode`` (default pg-schema) on plan ``large`` (its per-minute
     budget is above the load), each with its administrator signed in, and ``--patients``
     patients loaded in one transaction Bundle per tenant;
  4. ``--rounds`` rounds of wrk GET ``/fhir/Patient?_count=20`` then POST ``/fhir/Patient``
     (``bench/peer/tenantplane.lua``), the server's RSS sampled after each and the CPU per
     request of the server and of PostgreSQL (every process of the ``postgres`` user) counted
     from /proc around each run;
  5. with ``--ingest`` (before the rounds), the Synthea sample's 20 patient transactions posted
     one after another to the first tenant, timed (resources/s);
  6. with ``--peer``, the peer's ``bench.sh`` after each round (HTTP part with
     ``WORKER_COUNTS=2``, one HTTP round, no extras), so rounds interleave A/B.

With ``TP_KEEP_WORKDIR=1`` the work directory (server log, tenant files) is kept.

Traffic goes to 127.0.0.1 only; every loop is bounded. Prints a Markdown table and writes the
raw numbers as JSON to ``--out``.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PEER = os.environ.get("PEER_DIR", os.path.abspath(os.path.join(ROOT, "..", "shared", "peers", "django-tenants")))
PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
PGPORT = int(os.environ.get("PGPORT", "55432"))
PORT = 18080
BASE = "tp.bench"
TOKEN = "tpo_bench_" + "x" * 40


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def psql(sql, db="postgres"):
    sh([f"{PGBIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(PGPORT),
        "-U", "postgres", "-d", db, "-c", sql], stdout=subprocess.DEVNULL)


def http(method, path, body=None, host=None, token=None, ctype="application/json", timeout=60):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=data, method=method)
    if host:
        req.add_header("Host", host)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def start_server(binary, workdir, mode, standby):
    cfg = os.path.join(workdir, "tenantplane.toml")
    # None: the binary's default (and a binary older than the standby pool starts).
    standby_toml = "" if standby is None else (
        "[tenants]\nstandby = { " + ", ".join(
            f'"{m}" = {standby}' for m in ("sqlite", "pg-schema", "pg-shared", "pg-database")) + " }")
    with open(os.path.join(workdir, "token"), "w") as f:
        f.write(TOKEN + "\n")
    pg = f"postgres://postgres@127.0.0.1:{PGPORT}"
    with open(cfg, "w") as f:
        f.write(f"""
[server]
listen = "127.0.0.1:{PORT}"
base_domain = "{BASE}"
[storage]
data_dir = "{workdir}/data"
[catalog]
url = "{pg}/tp_catalog"
[bootstrap]
token_file = "{workdir}/token"
{standby_toml}
[data.servers.main]
url = "{pg}/tp_data"
app_password = "bench-app-password"
modes = ["{mode if mode != 'sqlite' else 'pg-schema'}"]
[limits]
per_ip_per_minute = 0
login_per_ip_per_minute = 100000
[log]
level = "warn"
""")
    log = open(os.path.join(workdir, "server.log"), "w")
    p = subprocess.Popen([binary, "serve", "--config", cfg], stdout=log, stderr=log)
    for _ in range(300):
        try:
            if http("GET", "/healthz")[0] == 200:
                return p
        except OSError:
            pass
        if p.poll() is not None:
            sys.exit(f"server exited; see {workdir}/server.log")
        time.sleep(0.1)
    p.kill()
    sys.exit("server did not start in 30 s")


def patient_bundle(n, tag):
    entries = []
    for i in range(n):
        entries.append({
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": {"resourceType": "Patient",
                         "name": [{"family": f"Seed{i}", "given": [tag]}],
                         "gender": random.choice(["female", "male"]),
                         "birthDate": f"19{random.randint(30, 99)}-0{random.randint(1, 9)}-1{random.randint(0, 9)}"},
            "request": {"method": "POST", "url": "Patient"},
        })
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def provision(n_tenants, n_patients, mode):
    """Creates the tenants, signs their administrators in, loads their patients; returns
    [(host, access token)] and the create-to-serving times (s)."""
    out, created = [], []
    for i in range(1, n_tenants + 1):
        slug = f"bench-{i:03d}"
        t0 = time.monotonic()
        st, v = http("POST", "/api/v1/tenants", {
            "slug": slug, "display_name": f"Bench hospital {i}", "profile": "hospital",
            "plan": "large", "isolation": mode, "admin_email": f"admin@{slug}.example"},
            token=TOKEN)
        if st != 201:
            sys.exit(f"creating {slug}: {st} {v}")
        created.append(time.monotonic() - t0)
        host = f"{slug}.{BASE}"
        otp = v["initial_admin"]["one_time_password"]
        st, v = http("POST", "/auth/login", {"email": f"admin@{slug}.example", "password": otp}, host=host)
        if st != 200:
            sys.exit(f"login {slug}: {st} {v}")
        st, v = http("POST", "/auth/password", {"current_password": otp,
                                                "new_password": "a long bench passphrase"},
                     host=host, token=v["access_token"])
        if st != 200:
            sys.exit(f"password {slug}: {st} {v}")
        token = v["access_token"]
        st, v = http("POST", "/fhir", patient_bundle(n_patients, slug), host=host, token=token,
                     ctype="application/fhir+json")
        if st != 200:
            sys.exit(f"patients {slug}: {st} {str(v)[:300]}")
        out.append((host, token))
    return out, created


def signups(mode, n, pause):
    """Sign-ups timed from request to the 201 of an active tenant: `n` each of a company, a
    hospital (two more roles) and a hospital with its first administrator (Argon2 of the
    one-time password), `pause` seconds apart so the standby pool refills in between.
    Returns {kind: [ms]}."""
    kinds = {"company": {"profile": "company"}, "hospital": {"profile": "hospital"},
             "hospital+admin": {"profile": "hospital", "admin_email": "admin@signup.example"}}
    out = {k: [] for k in kinds}
    for i in range(n):
        for k, extra in kinds.items():
            time.sleep(pause)
            slug = f"signup-{k.replace('+', '-')}-{i}"
            body = {"slug": slug, "display_name": f"Sign-up {i}", "plan": "large", "isolation": mode}
            body.update(extra)
            t0 = time.monotonic()
            st, v = http("POST", "/api/v1/tenants", body, token=TOKEN)
            ms = (time.monotonic() - t0) * 1000
            if st != 201 or v["status"] != "active":
                sys.exit(f"sign-up {slug}: {st} {v}")
            out[k].append(ms)
            # The same client's cost of an operator-authenticated read of that tenant: what
            # HTTP, the client and authentication add to any request.
            t0 = time.monotonic()
            st, _ = http("GET", f"/api/v1/tenants/{slug}", token=TOKEN)
            if st == 200:
                out.setdefault("baseline: GET the tenant", []).append((time.monotonic() - t0) * 1000)
    return out


def wrk(tokens_file, mode, secs, threads, conns, get_path=None):
    env = dict(os.environ, TOKENS=tokens_file, MODE=mode)
    if get_path:
        env["GET_PATH"] = get_path
    r = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--timeout", "10s",
                        "-s", os.path.join(HERE, "tenantplane.lua"), f"http://127.0.0.1:{PORT}"],
                       env=env, capture_output=True, text=True, timeout=secs + 60, check=True)
    for line in r.stdout.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[len("WRKJSON "):])
    sys.exit(f"wrk printed no summary:\n{r.stdout}\n{r.stderr}")


HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid=None):
    """CPU time (user + system, with reaped children) of `pid`, or with no pid of every
    process of the `postgres` OS user (the cluster: exited backends count through the
    postmaster's children times)."""
    import pwd
    try:
        pg_uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        pg_uid = -1
    pids = [pid] if pid else [int(n) for n in os.listdir("/proc") if n.isdigit()]
    total = 0
    for p in pids:
        try:
            if pid is None and os.stat(f"/proc/{p}").st_uid != pg_uid:
                continue
            with open(f"/proc/{p}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in rest[11:15])
        except (OSError, ValueError, IndexError):
            continue
    return total / HZ


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peer_round(outdir):
    env = dict(os.environ, KEEP_RUNNING="1", RUN_EXTRAS="0", HTTP_ROUNDS="1", WORKER_COUNTS="2",
               OUTDIR=outdir)
    sh(["bash", os.path.join(PEER, "bench.sh")], env=env, stdout=subprocess.DEVNULL,
       stderr=subprocess.DEVNULL, timeout=3600)
    with open(os.path.join(outdir, "summary.md")) as f:
        return f.read()


def stop_server(server):
    """SIGTERM (a graceful stop), then SIGKILL after 30 s."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def ingest(host, token):
    """Posts the Synthea sample (``crates/tenantplane/sample/synthea``) to one tenant: the
    hospital and practitioner batches first (untimed), then the 20 patient transactions one
    after another, timed. Returns (resources, seconds)."""
    import bz2
    sample = os.path.join(ROOT, "crates", "tenantplane", "sample", "synthea")
    files = sorted(os.listdir(sample))
    bodies = [(f, bz2.decompress(open(os.path.join(sample, f), "rb").read())) for f in files
              if f.endswith(".json.bz2")]
    resources, took = 0, 0.0
    for name, body in sorted(bodies, key=lambda x: not x[0].startswith("0-")):
        timed = not name.startswith("0-")
        n = len(json.loads(body)["entry"])
        t0 = time.monotonic()
        st, resp = http("POST", "/fhir", body, host=host, token=token,
                        ctype="application/fhir+json", timeout=120)
        if st != 200:
            sys.exit(f"ingest of {name}: {st} {str(resp)[:300]}")
        if timed:
            took += time.monotonic() - t0
            resources += n
    return resources, took


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.expanduser("~/.cache/tenantplane-target/release/tenantplane"))
    ap.add_argument("--mode", default="pg-schema", choices=["pg-schema", "pg-shared", "pg-database", "sqlite"])
    ap.add_argument("--standby", type=int, default=2, help="standby pool size per mode (0: none)")
    ap.add_argument("--signups", type=int, default=7, help="timed sign-ups of each kind")
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--peer", action="store_true", help="run the peer's bench.sh after each round")
    ap.add_argument("--ingest", action="store_true",
                    help="time the Synthea sample's 20 patient transactions into the first tenant")
    ap.add_argument("--no-setup", action="store_true")
    ap.add_argument("--out", default="/tmp/tp-side-by-side.json")
    a = ap.parse_args()
    if (a.tenants < 1 or a.tenants > 1000 or a.rounds < 1 or a.rounds > 10 or a.secs > 120
            or a.signups > 50 or a.standby > 20):
        sys.exit("bounded: 1-1000 tenants, 1-10 rounds, at most 120 s per wrk run")
    if not a.no_setup:
        sh(["bash", os.path.join(PEER, "setup.sh")], stdout=subprocess.DEVNULL)
    for db in ("tp_catalog", "tp_data"):
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        psql(f"CREATE DATABASE {db}")
    workdir = tempfile.mkdtemp(prefix="tp-side-by-side-")
    server = start_server(a.binary, workdir, a.mode, a.standby)
    results = {"mode": a.mode, "tenants": a.tenants, "patients": a.patients, "rounds": []}
    try:
        time.sleep(3)  # the standby pool fills at start
        results["signup_ms"] = signups(a.mode, a.signups, 0.5)
        for k, v in results["signup_ms"].items():
            v = sorted(v)
            print(f"sign-up {k}: p50 {v[len(v) // 2]:.1f} ms, min {v[0]:.1f}, max {v[-1]:.1f} "
                  f"(standby pool {a.standby})", file=sys.stderr)
        t0 = time.monotonic()
        tokens, created = provision(a.tenants, a.patients, a.mode)
        results["provision_s"] = time.monotonic() - t0
        results["create_ms_median"] = sorted(created)[len(created) // 2] * 1000
        tokens_file = os.path.join(workdir, "tokens")
        with open(tokens_file, "w") as f:
            for host, tok in tokens:
                f.write(f"{host} {tok}\n")
        if a.ingest:
            n, took = ingest(*tokens[0])
            results["ingest"] = {"resources": n, "seconds": took, "per_s": n / took}
            print(f"ingest: {n} resources in {took:.2f} s = {n / took:.0f} resources/s", file=sys.stderr)
        wrk(tokens_file, "get", 5, a.threads, a.conns)  # warm-up, unrecorded
        for r in range(1, a.rounds + 1):
            rnd = {"round": r}
            for mode in ("get", "post"):
                pg0, tp0 = cpu_seconds(), cpu_seconds(server.pid)
                rnd[mode] = wrk(tokens_file, mode, a.secs, a.threads, a.conns)
                pg1, tp1 = cpu_seconds(), cpu_seconds(server.pid)
                n = max(rnd[mode]["requests"], 1)
                rnd[mode]["pg_cpu_ms_per_req"] = (pg1 - pg0) * 1000 / n
                rnd[mode]["server_cpu_ms_per_req"] = (tp1 - tp0) * 1000 / n
                rnd[mode]["rss_mib"] = rss_mib(server.pid)
            if a.peer:
                rnd["peer_summary"] = peer_round(os.path.join(workdir, f"peer-{r}"))
            results["rounds"].append(rnd)
            print(f"round {r}: GET {rnd['get']['rps']:.0f} req/s p99 {rnd['get']['lat_p99_ms']:.1f} ms; "
                  f"POST {rnd['post']['rps']:.0f} req/s p99 {rnd['post']['lat_p99_ms']:.1f} ms",
                  file=sys.stderr)
    finally:
        stop_server(server)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"| Tenantplane {a.mode}, {a.tenants} tenants x {a.patients} patients | GET req/s | GET p50 / p99 ms "
          f"| POST req/s | POST p50 / p99 ms | CPU ms per GET / POST: server, PostgreSQL | RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for rnd in results["rounds"]:
        g, p = rnd["get"], rnd["post"]
        print(f"| round {rnd['round']} | {g['rps']:.0f} | {g['lat_p50_ms']:.1f} / {g['lat_p99_ms']:.1f} "
              f"| {p['rps']:.0f} | {p['lat_p50_ms']:.1f} / {p['lat_p99_ms']:.1f} "
              f"| {g['server_cpu_ms_per_req']:.2f}, {g['pg_cpu_ms_per_req']:.2f} / "
              f"{p['server_cpu_ms_per_req']:.2f}, {p['pg_cpu_ms_per_req']:.2f} | {p['rss_mib']:.0f} |")
    errs = sum(r[m][k] for r in results["rounds"] for m in ("get", "post")
               for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    for k, v in results.get("signup_ms", {}).items():
        v = sorted(v)
        print(f"sign-up ({k}, standby pool {a.standby}): p50 {v[len(v) // 2]:.1f} ms over {len(v)}")
    print(f"\ncreate one tenant, ready to serve: median {results['create_ms_median']:.1f} ms; "
          f"provisioning all took {results['provision_s']:.0f} s; errors (non-2xx, timeouts): {errs}")
    for rnd in results["rounds"]:
        if "peer_summary" in rnd:
            print(f"\npeer, round {rnd['round']}:\n{rnd['peer_summary']}")
    if not os.environ.get("TP_KEEP_WORKDIR"):
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
