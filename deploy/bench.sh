#!/usr/bin/env bash
# The standard benchmark: starts `flashsale all` on a namespace and databases of
# its own, runs `flashsale bench` against it (100,000 users, 10,000 units, 256
# connections, 30% paid, redis and mysql inventory side by side), writes the
# reports to bench-results/, and stops the server. Exits with the bench's code.
# Extra arguments go to `flashsale bench` (e.g. --users 20000).
# FLASHSALE_BENCH_OUT (default bench-results), FLASHSALE_BENCH_ADDR (default
# 127.0.0.1:8090) and FLASHSALE_BIN (default ./bin/flashsale) move the reports,
# the server and the binary (the e2e test of this script uses them).
set -euo pipefail
# Whatever stops the script says what it was doing.
trap 'rc=$?; echo "bench: stopped: \"$BASH_COMMAND\" failed with exit code $rc (deploy/bench.sh line $LINENO)" >&2' ERR
cd "$(dirname "$0")/.."
out=${FLASHSALE_BENCH_OUT:-bench-results}
bin=${FLASHSALE_BIN:-./bin/flashsale}
mkdir -p "$out"
[ -x "$bin" ] || { echo "bench: no flashsale binary at $bin (make build)" >&2; exit 1; }

# A deployment of its own, from a clean slate (deploy/benchenv.sh).
. deploy/benchenv.sh
bench_env flashsale_bench
export FLASHSALE_HTTP_ADDR=${FLASHSALE_BENCH_ADDR:-127.0.0.1:8090}

"$bin" all >"$out/server.log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 150); do
  curl -sf "http://$FLASHSALE_HTTP_ADDR/readyz" >/dev/null && break
  kill -0 $server 2>/dev/null || { echo "bench: flashsale all died:"; tail -20 "$out/server.log"; exit 1; }
  sleep 0.2
done
curl -sf "http://$FLASHSALE_HTTP_ADDR/readyz" >/dev/null || { echo "bench: flashsale all not ready"; exit 1; }

echo "bench: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -srm); reports in $out/"
"$bin" bench --url "http://$FLASHSALE_HTTP_ADDR" \
  --users 100000 --stock 10000 --conns 256 --pay-ratio 0.3 --payment-window 900 --compare --duration 10m \
  --json "$out/bench.json" --html "$out/bench.html" "$@"
