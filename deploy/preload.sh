#!/usr/bin/env bash
# The pipeline alone: `flashsale ingress`, `relay` and `delayq` up as separate
# processes on a namespace and databases of their own, no worker; then
# `flashsale bench --preload 10000` queues 10,000 purchases, starts
# `flashsale worker` and reports orders/s by created_at, the time until the
# last ticket is final, and the CPU each process spent (BENCHMARKS.md, issue 26).
# Extra arguments go to `flashsale bench` (e.g. --preload 20000 --stock 20000).
# FLASHSALE_BENCH_OUT (default bench-results/preload) and FLASHSALE_BIN
# (default ./bin/flashsale) move the reports and the binary.
set -euo pipefail
trap 'rc=$?; echo "preload: stopped: \"$BASH_COMMAND\" failed with exit code $rc (deploy/preload.sh line $LINENO)" >&2' ERR
cd "$(dirname "$0")/.."
out=${FLASHSALE_BENCH_OUT:-bench-results/preload}
bin=$(realpath "${FLASHSALE_BIN:-./bin/flashsale}")
mkdir -p "$out"
[ -x "$bin" ] || { echo "preload: no flashsale binary at $bin (make build)" >&2; exit 1; }

# A deployment of its own, from a clean slate (deploy/benchenv.sh).
. deploy/benchenv.sh
bench_env flashsale_pre

"$bin" migrate >"$out/migrate.log" 2>&1 || { echo "preload: migrate failed"; tail -20 "$out/migrate.log"; exit 1; }
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true' EXIT
port=8091
for role in ingress relay delayq; do
  FLASHSALE_HTTP_ADDR=127.0.0.1:$port "$bin" "$role" >"$out/$role.log" 2>&1 &
  pids+=($!)
  port=$((port + 1))
done
for _ in $(seq 150); do
  curl -sf http://127.0.0.1:8091/readyz >/dev/null && break
  sleep 0.2
done
curl -sf http://127.0.0.1:8091/readyz >/dev/null || { echo "preload: ingress not ready"; tail -20 "$out/ingress.log"; exit 1; }

"$bin" bench --url http://127.0.0.1:8091 --preload 10000 --stock 10000 --conns 256 \
  --pay-ratio 0 --payment-window 900 --duration 5m --compare=false \
  --workers-cmd "FLASHSALE_HTTP_ADDR=127.0.0.1:8094 exec $bin worker >$out/worker.log 2>&1" \
  --json "$out/bench.json" --html "$out/bench.html" "$@"
