# Sourced by deploy/bench.sh and deploy/preload.sh: bench_env NAME exports the
# settings of a deployment of its own under namespace NAME (databases NAME_meta,
# NAME_s0 and NAME_s1 on the local MariaDB; the local Redis and RabbitMQ) and
# starts it from a clean slate: its databases, Redis keys and queues deleted.
# Leftovers of an interrupted run (a queue backlog, overdue orders the sweeper
# would expire) would otherwise compete with the run for the machine.
bench_env() {
  local ns=$1
  export FLASHSALE_NAMESPACE=$ns
  export FLASHSALE_MYSQL_META_DSN="root@tcp(127.0.0.1:3306)/${ns}_meta"
  export FLASHSALE_MYSQL_SHARD_DSNS="root@tcp(127.0.0.1:3306)/${ns}_s0,root@tcp(127.0.0.1:3306)/${ns}_s1"
  export FLASHSALE_ADMIN_TOKEN=${FLASHSALE_ADMIN_TOKEN:-bench-admin-token-0123}
  export FLASHSALE_PAYMENT_SECRET=${FLASHSALE_PAYMENT_SECRET:-bench-payment-secret-0123}
  export FLASHSALE_LOG_LEVEL=${FLASHSALE_LOG_LEVEL:-warn}
  for db in "${ns}_meta" "${ns}_s0" "${ns}_s1"; do
    mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db"
  done
  redis-cli -h 127.0.0.1 --scan --pattern "$ns:*" | xargs -r -n 500 redis-cli -h 127.0.0.1 del >/dev/null
  # (awk, not grep: a broker with no bench queue yet must not fail the pipeline;
  # rabbitmqctl reads its standard input, so each delete gets /dev/null: fed the
  # loop's pipe, the first one swallowed the other names and only it was deleted)
  rabbitmqctl -q list_queues name 2>/dev/null | awk -v p="$ns." 'index($0, p) == 1' | while read -r q; do
    rabbitmqctl -q delete_queue "$q" >/dev/null </dev/null
  done
}
