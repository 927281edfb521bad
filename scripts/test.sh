#!/usr/bin/env bash
# The test command: installs what the suite needs when it is missing, then runs every
# crate's tests (`--no-fail-fast`: one failing crate does not hide the others' results).
#
#   ./scripts/test.sh                 # the whole suite
#   ./scripts/test.sh -p tenantplane-records   # extra arguments go to `cargo test`
#
# Installs (Debian/Ubuntu, as root or through sudo): PostgreSQL, PgBouncer, Redis, Prometheus,
# Alertmanager (amtool); and
# schemathesis (PyPI) into a virtual environment under ~/.cache for the OpenAPI contract
# run (crates/server/tests/it/contract.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tenantplane-target}"
[ -t 1 ] || export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "scripts/test.sh: need root (or sudo) to install: $*" >&2; exit 1
  fi
}

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || need_apt+=(pgbouncer)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v amtool >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

SCHEMATHESIS_VERSION=4.32.5
venv="${TP_VENV:-$HOME/.cache/tenantplane-venv}"
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
export TP_SCHEMATHESIS="$venv/bin/st"

exec cargo test --workspace --locked --no-fail-fast "$@"
