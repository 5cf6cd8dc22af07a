#!/usr/bin/env bash
# A local cluster topology on loopback, the shape a shop runs on several hosts:
#
#   - Redis Cluster: 6 redis-server nodes, 3 masters + 3 replicas
#     (ports 7001-7006, cluster-node-timeout 2000 ms);
#   - RabbitMQ: 3 nodes clustered (rabbit-c1@localhost .. rabbit-c3@localhost,
#     AMQP ports 5701-5703, distribution ports 25701-25703, management off,
#     one Erlang cookie of their own);
#   - flashsale: two processes of each role (ingress, worker, relay, delayq),
#     ingress on 127.0.0.1:8101 and :8102, every process's operations surface
#     (/readyz, /metrics) on 127.0.0.1:81[1-4][12]; namespace flashsale_cluster,
#     databases flashsale_cluster_meta/_s0/_s1 on the local MariaDB; each sale's
#     stock in $FLASHSALE_CLUSTER_SEGMENTS (default 3) segments, one per master.
#
# Everything it starts lives under one directory, $FLASHSALE_CLUSTER_DIR
# (default /tmp/flashsale-cluster): data, logs, pid files, the Erlang cookie and
# flashsale.env (the processes' FLASHSALE_* settings, in the format of a systemd
# EnvironmentFile). It never touches the services on the standard ports (Redis
# 6379, RabbitMQ 5672/rabbit@localhost), only the processes whose pids it wrote.
#
#   deploy/cluster.sh up       start whatever is not running (idempotent: up twice is fine)
#   deploy/cluster.sh redis-up start only the Redis Cluster (make bench-segments)
#   deploy/cluster.sh down     stop every process it started, drop its databases, remove the directory
#   deploy/cluster.sh status   one line per process; exits 0 when everything is up, 3 otherwise
#
# Needs redis-server/redis-cli, rabbitmq-server (Debian's package: its scripts
# under /usr/lib/rabbitmq/bin) and a MariaDB on 127.0.0.1:3306 reachable as
# root without a password (deploy/services.sh installs and starts all three).
# The flashsale binary is $FLASHSALE_BIN (default bin/flashsale, built with go
# when missing).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${FLASHSALE_CLUSTER_DIR:-/tmp/flashsale-cluster}
bin=${FLASHSALE_BIN:-$root/bin/flashsale}
rabbit_bin=${RABBITMQ_SCRIPTS_DIR:-/usr/lib/rabbitmq/bin}
mysql_host=127.0.0.1 mysql_port=3306
ns=flashsale_cluster
redis_ports=(7001 7002 7003 7004 7005 7006)
rabbit_nodes=(c1 c2 c3)
declare -A amqp_port=([c1]=5701 [c2]=5702 [c3]=5703) dist_port=([c1]=25701 [c2]=25702 [c3]=25703)
roles=(ingress worker relay delayq)
declare -A ops_base=([ingress]=8110 [worker]=8120 [relay]=8130 [delayq]=8140)
http_base=8100

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { log "stopping: $*"; exit 1; }
trap 'rc=$?; [ $rc = 0 ] || log "stopped (exit $rc) at line $LINENO: $BASH_COMMAND"' EXIT

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not come up within ${secs}s (logs under $dir)"
    sleep 0.5
  done
}

# alive PIDFILE NAME: the pid in PIDFILE runs and its command line mentions
# NAME, or (a RabbitMQ node, whose command line does not name it) its
# environment has RABBITMQ_NODENAME=NAME: a reused pid of some other program is
# not ours.
alive() {
  local pid
  [ -f "$1" ] && pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" ||
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx -- "RABBITMQ_NODENAME=$2"
}

# stop_pid PIDFILE NAME SECONDS: SIGTERM, then SIGKILL after SECONDS.
stop_pid() {
  local f=$1 name=$2 secs=$3 pid
  alive "$f" "$name" || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + secs))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$name (pid $pid) still runs ${secs}s after SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
  rm -f "$f"
}

# --- Redis Cluster -----------------------------------------------------------

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]; }
redis_cluster_ok() {
  local p
  for p in "${redis_ports[@]}"; do
    redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
}
redis_known_nodes() { redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p'; }

redis_up() {
  command -v redis-server >/dev/null || die "redis-server is not installed (deploy/services.sh installs it)"
  local p d
  for p in "${redis_ports[@]}"; do
    d=$dir/redis/$p
    if redis_ping "$p"; then
      alive "$d/redis.pid" "redis-server" || die "port $p answers PING but is not a redis-server of $dir: choose another FLASHSALE_CLUSTER_DIR or free the port"
      continue
    fi
    mkdir -p "$d"
    # No snapshots, no AOF: MySQL is the book of record and flashsale rebuilds a
    # sale's keys from it (a shop would still turn the AOF on: fewer rebuilds).
    redis-server --daemonize yes --bind 127.0.0.1 --port "$p" --dir "$d" --pidfile "$d/redis.pid" \
      --logfile "$d/redis.log" --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file "$d/nodes.conf" --cluster-node-timeout 2000 >/dev/null
  done
  for p in "${redis_ports[@]}"; do wait_for "redis $p" 20 redis_ping "$p"; done
  if redis_cluster_ok && [ "$(redis_known_nodes 7001)" = 6 ]; then
    log "redis cluster: up (7001-7006)"
    return
  fi
  if [ "$(redis_known_nodes "${redis_ports[0]}")" = 1 ]; then
    local addrs=()
    for p in "${redis_ports[@]}"; do addrs+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/redis/create.log" 2>&1 ||
      die "redis-cli --cluster create failed: $(tail -5 "$dir/redis/create.log")"
  fi
  wait_for "redis cluster_state:ok on every node" 30 redis_cluster_ok
  log "redis cluster: 3 masters + 3 replicas on 7001-7006"
}

redis_down() {
  local p
  for p in "${redis_ports[@]}"; do stop_pid "$dir/redis/$p/redis.pid" redis-server 10; done
}

# --- RabbitMQ cluster --------------------------------------------------------

# rabbit_env NODE: the environment of a private node (and of the CLI talking to
# it: HOME holds the cluster's Erlang cookie).
rabbit_env() {
  local n=$1 d=$dir/rabbitmq/$1
  echo HOME="$dir/rabbitmq" \
    RABBITMQ_NODENAME="rabbit-$n@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="${amqp_port[$n]}" RABBITMQ_DIST_PORT="${dist_port[$n]}" \
    RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
    RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" RABBITMQ_PID_FILE="$d/pid" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins"
}
# ctl NODE ARGS...: rabbitmqctl against a private node.
ctl() {
  local n=$1; shift
  # (no erl_crash.dump of a failed CLI call in the working directory)
  env $(rabbit_env "$n") ERL_CRASH_DUMP_SECONDS=0 "$rabbit_bin/rabbitmqctl" -n "rabbit-$n@localhost" "$@"
}
rabbit_ready() { ctl "$1" -q await_startup --timeout 3; }
rabbit_clustered() {
  local out
  out=$(ctl "${rabbit_nodes[0]}" -q eval 'rabbit_nodes:all_running().' 2>/dev/null) || return 1
  local n
  for n in "${rabbit_nodes[@]}"; do grep -q "rabbit-$n@localhost" <<<"$out" || return 1; done
}

rabbit_up() {
  [ -x "$rabbit_bin/rabbitmq-server" ] || die "RabbitMQ is not installed ($rabbit_bin/rabbitmq-server missing; deploy/services.sh installs it)"
  local n d
  mkdir -p "$dir/rabbitmq"
  if [ ! -f "$dir/rabbitmq/.erlang.cookie" ]; then
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/rabbitmq/.erlang.cookie")
    chmod 400 "$dir/rabbitmq/.erlang.cookie"
  fi
  for n in "${rabbit_nodes[@]}"; do
    d=$dir/rabbitmq/$n
    # Running already (its pid file, or it answers with our cookie): leave it.
    if alive "$d/pid" "rabbit-$n@localhost" || rabbit_ready "$n" >/dev/null 2>&1; then continue; fi
    mkdir -p "$d/log"
    # A config of its own: the machine's /etc/rabbitmq binds 5672 and names the node.
    printf 'listeners.tcp.local = 127.0.0.1:%s\nloopback_users.guest = true\n' "${amqp_port[$n]}" >"$d/rabbitmq.conf"
    echo '[].' >"$d/enabled_plugins" # management and every other plugin off
    echo 'ERL_EPMD_ADDRESS=127.0.0.1' >"$d/rabbitmq-env.conf"
    # From its own directory: a node that fails to start leaves its erl_crash.dump there.
    (cd "$d" && env $(rabbit_env "$n") RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+S 1:1" \
      "$rabbit_bin/rabbitmq-server" -detached) >"$d/log/start.log" 2>&1 || die "rabbitmq node $n did not start: $(tail -5 "$d/log/start.log")"
  done
  # await_startup fails at once while a node still registers: retry it.
  for n in "${rabbit_nodes[@]}"; do
    wait_for "rabbitmq node rabbit-$n@localhost" 120 rabbit_ready "$n"
    # The node's own pid, for down and status (the start script's is gone).
    ctl "$n" -q eval 'list_to_integer(os:getpid()).' >"$dir/rabbitmq/$n/pid"
  done
  if rabbit_clustered; then
    log "rabbitmq cluster: up (rabbit-c1..c3@localhost on 5701-5703)"
    return
  fi
  local seed=rabbit-${rabbit_nodes[0]}@localhost
  for n in "${rabbit_nodes[@]:1}"; do
    ctl "${rabbit_nodes[0]}" -q eval 'rabbit_nodes:all_running().' 2>/dev/null | grep -q "rabbit-$n@localhost" && continue
    log "rabbitmq: rabbit-$n@localhost joins $seed"
    ctl "$n" -q stop_app >/dev/null 2>>"$dir/rabbitmq/join.log"
    ctl "$n" -q join_cluster "$seed" >/dev/null || die "rabbit-$n@localhost could not join $seed (see $dir/rabbitmq/$n/log)"
    ctl "$n" -q start_app >/dev/null 2>>"$dir/rabbitmq/join.log" # (3.10 logs a harmless tracking-table error here)
  done
  wait_for "rabbitmq cluster of 3 running nodes" 60 rabbit_clustered
  log "rabbitmq cluster: rabbit-c1..c3@localhost on 5701-5703"
}

rabbit_down() {
  local n
  for n in "${rabbit_nodes[@]}"; do
    alive "$dir/rabbitmq/$n/pid" "rabbit-$n@localhost" || continue
    ctl "$n" -q stop >/dev/null 2>&1 || true # a graceful stop; the pid's SIGTERM/SIGKILL if that failed
    stop_pid "$dir/rabbitmq/$n/pid" "rabbit-$n@localhost" 20
  done
}

# --- flashsale -----------------------------------------------------------------

write_env() {
  local f=$dir/flashsale.env
  [ -f "$f" ] && return
  local redis amqp n p
  redis=$(printf '127.0.0.1:%s,' "${redis_ports[@]}"); redis=${redis%,}
  amqp=""
  for n in "${rabbit_nodes[@]}"; do amqp+="amqp://guest:guest@127.0.0.1:${amqp_port[$n]}/,"; done
  amqp=${amqp%,}
  local dsn="root@tcp($mysql_host:$mysql_port)"
  umask 077
  cat >"$f" <<EOF
# FLASHSALE_* settings of every process of this cluster (systemd EnvironmentFile format).
FLASHSALE_REDIS_ADDRS=$redis
FLASHSALE_AMQP_URL=$amqp
FLASHSALE_MYSQL_META_DSN=$dsn/${ns}_meta
FLASHSALE_MYSQL_SHARD_DSNS=$dsn/${ns}_s0,$dsn/${ns}_s1
FLASHSALE_NAMESPACE=$ns
FLASHSALE_REDIS_SEGMENTS=${FLASHSALE_CLUSTER_SEGMENTS:-3}
FLASHSALE_ADMIN_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
FLASHSALE_PAYMENT_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
FLASHSALE_LOG_LEVEL=info
EOF
  umask 022
}

# run_env: flashsale.env as NAME=VALUE words for env(1).
run_env() { grep -v '^#' "$dir/flashsale.env" | grep '='; }

fs_ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$1/readyz")" = 200 ]; }

flashsale_up() {
  if [ ! -x "$bin" ]; then
    command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
    log "building $bin"
    (cd "$root" && go build -o "$bin" ./cmd/flashsale) || die "go build ./cmd/flashsale failed"
  fi
  mariadb -h"$mysql_host" -P"$mysql_port" -uroot -e 'SELECT 1' >/dev/null 2>&1 ||
    die "MariaDB on $mysql_host:$mysql_port does not answer root over TCP (deploy/services.sh starts it)"
  write_env
  mkdir -p "$dir/flashsale"
  env $(run_env) "$bin" migrate >"$dir/flashsale/migrate.log" 2>&1 || die "flashsale migrate failed: $(tail -5 "$dir/flashsale/migrate.log")"
  local role i f ops http started=()
  for role in "${roles[@]}"; do
    for i in 1 2; do
      f=$dir/flashsale/$role-$i
      ops=127.0.0.1:$((ops_base[$role] + i))
      http=127.0.0.1:$((http_base + i)) # only the ingress listens on it
      alive "$f.pid" "flashsale $role" && continue
      # setsid: the process outlives this script and its terminal.
      env $(run_env) FLASHSALE_HTTP_ADDR="$http" FLASHSALE_OPS_ADDR="$ops" \
        setsid "$bin" "$role" >>"$f.log" 2>&1 </dev/null &
      echo $! >"$f.pid"
      started+=("$role-$i:$ops")
    done
  done
  local s
  for s in "${started[@]}"; do
    wait_for "flashsale ${s%%:*} (/readyz on ${s#*:})" 60 fs_ready "${s#*:}"
  done
  log "flashsale: ingress on http://127.0.0.1:$((http_base + 1)) and http://127.0.0.1:$((http_base + 2)); settings in $dir/flashsale.env"
}

flashsale_down() {
  local role i
  for role in "${roles[@]}"; do
    for i in 1 2; do
      # The roles finish in-flight work within FLASHSALE_SHUTDOWN_GRACE_SECONDS (20).
      stop_pid "$dir/flashsale/$role-$i.pid" "flashsale $role" 30 &
    done
  done
  wait
}

drop_databases() {
  local db
  for db in "${ns}_meta" "${ns}_s0" "${ns}_s1"; do
    mariadb -h"$mysql_host" -P"$mysql_port" -uroot -e "DROP DATABASE IF EXISTS \`$db\`" 2>/dev/null ||
      log "could not drop database $db (MariaDB away?)"
  done
}

# --- subcommands ---------------------------------------------------------------

status() {
  local bad=0 p n role i
  for p in "${redis_ports[@]}"; do
    if redis_ping "$p"; then
      printf 'redis    %-22s up   %s\n' "127.0.0.1:$p" "$(redis-cli -p "$p" info replication | sed -n 's/^role:\(.*\)\r$/\1/p')"
    else
      printf 'redis    %-22s DOWN\n' "127.0.0.1:$p"; bad=1
    fi
  done
  redis_cluster_ok || { echo "redis    cluster_state is not ok on every node"; bad=1; }
  for n in "${rabbit_nodes[@]}"; do
    if alive "$dir/rabbitmq/$n/pid" "rabbit-$n@localhost" && rabbit_ready "$n" >/dev/null 2>&1; then
      printf 'rabbitmq %-22s up   amqp 127.0.0.1:%s\n' "rabbit-$n@localhost" "${amqp_port[$n]}"
    else
      printf 'rabbitmq %-22s DOWN\n' "rabbit-$n@localhost"; bad=1
    fi
  done
  rabbit_clustered || { echo "rabbitmq the three nodes are not one running cluster"; bad=1; }
  for role in "${roles[@]}"; do
    for i in 1 2; do
      local ops=127.0.0.1:$((ops_base[$role] + i))
      if alive "$dir/flashsale/$role-$i.pid" "flashsale $role" && fs_ready "$ops"; then
        printf 'flashsale %-21s up   pid %s, ops %s\n' "$role-$i" "$(cat "$dir/flashsale/$role-$i.pid")" "$ops"
      else
        printf 'flashsale %-21s DOWN (log %s)\n' "$role-$i" "$dir/flashsale/$role-$i.log"; bad=1
      fi
    done
  done
  [ $bad = 0 ] || return 3
}

case "${1:-}" in
up)
  mkdir -p "$dir"
  redis_up
  rabbit_up
  flashsale_up
  log "up; deploy/cluster.sh status shows each process, deploy/cluster.sh down removes everything"
  ;;
redis-up)
  mkdir -p "$dir"
  redis_up
  ;;
down)
  if [ ! -d "$dir" ]; then
    log "nothing to stop: $dir does not exist"
    exit 0
  fi
  flashsale_down
  rabbit_down
  redis_down
  drop_databases
  rm -rf "$dir"
  log "down: every process stopped, databases dropped, $dir removed"
  ;;
status)
  trap - EXIT
  [ -d "$dir" ] || { log "not up: $dir does not exist"; exit 3; }
  status || { log "not everything is up"; exit 3; }
  ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
