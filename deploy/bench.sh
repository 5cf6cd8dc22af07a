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

export FLASHSALE_NAMESPACE=flashsale_bench
export FLASHSALE_HTTP_ADDR=${FLASHSALE_BENCH_ADDR:-127.0.0.1:8090}
export FLASHSALE_MYSQL_META_DSN='root@tcp(127.0.0.1:3306)/flashsale_bench_meta'
export FLASHSALE_MYSQL_SHARD_DSNS='root@tcp(127.0.0.1:3306)/flashsale_bench_s0,root@tcp(127.0.0.1:3306)/flashsale_bench_s1'
export FLASHSALE_ADMIN_TOKEN=${FLASHSALE_ADMIN_TOKEN:-bench-admin-token-0123}
export FLASHSALE_PAYMENT_SECRET=${FLASHSALE_PAYMENT_SECRET:-bench-payment-secret-0123}
export FLASHSALE_LOG_LEVEL=${FLASHSALE_LOG_LEVEL:-warn}

# Start from a clean slate: the bench's own databases, Redis keys and queues.
# Leftovers of an interrupted run (a queue backlog, overdue orders the sweeper
# would expire) would otherwise compete with this run for the machine.
for db in flashsale_bench_meta flashsale_bench_s0 flashsale_bench_s1; do
  mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db"
done
redis-cli -h 127.0.0.1 --scan --pattern "$FLASHSALE_NAMESPACE:*" | xargs -r -n 500 redis-cli -h 127.0.0.1 del >/dev/null
# (awk, not grep: a broker with no bench queue yet must not fail the pipeline;
# rabbitmqctl reads its standard input, so each delete gets /dev/null: fed the
# loop's pipe, the first one swallowed the other names and only it was deleted)
rabbitmqctl -q list_queues name 2>/dev/null | awk -v p="$FLASHSALE_NAMESPACE." 'index($0, p) == 1' | while read -r q; do
  rabbitmqctl -q delete_queue "$q" >/dev/null </dev/null
done

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
