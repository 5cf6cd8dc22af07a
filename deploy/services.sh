#!/usr/bin/env bash
# Installs (Debian packages, as root) and starts the services flashsale needs, all
# bound to loopback: Redis 127.0.0.1:6379, RabbitMQ 127.0.0.1:5672 (guest/guest),
# MariaDB 127.0.0.1:3306 (root, empty password over TCP). Idempotent: what is
# installed is not installed again, what answers is not started again. Each
# service is checked by asking it, not by its process existing (a MariaDB started
# wrongly exits silently).
#
#   deploy/services.sh            install + start Redis, RabbitMQ, MariaDB
#   deploy/services.sh chromium   also install headless Chromium and Prometheus (tests only:
#                                 the page tests, promtool checks, a Prometheus scraping a sale)
#                                 and podman (the container image test, deploy/image_test.go)
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not come up within ${secs}s"
    sleep 0.5
  done
}

apt_updated=""
install_pkgs() {
  [ "$(id -u)" = 0 ] || die "installing $* needs root (run as root, or install them yourself)"
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  # Keep package scripts from starting daemons (there may be no init system);
  # this script starts them itself, bound to loopback.
  local policy=/usr/sbin/policy-rc.d had_policy=""
  [ -e "$policy" ] && had_policy=1
  [ -n "$had_policy" ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; }
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  [ -n "$had_policy" ] || rm -f "$policy"
}

redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }
start_redis() {
  command -v redis-server >/dev/null || install_pkgs redis-server redis-tools
  redis_up && { log "redis: up"; return; }
  local dir=/var/lib/redis; [ -w "$dir" ] || dir=/tmp
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir "$dir" >/dev/null
  wait_for redis 30 redis_up
  log "redis: started"
}

rabbit_up() { rabbitmqctl -q await_startup --timeout 2; }
start_rabbitmq() {
  command -v rabbitmq-server >/dev/null || install_pkgs rabbitmq-server
  rabbit_up >/dev/null 2>&1 && { log "rabbitmq: up"; return; }
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached >/dev/null 2>&1 || true
  # await_startup fails at once while the node is still registering: retry it.
  wait_for rabbitmq 180 rabbit_up
  log "rabbitmq: started"
}

mysql_up() { mariadb-admin --protocol=socket -uroot ping; }
mysql_tcp() { mariadb -h127.0.0.1 -P3306 -uroot -e 'SELECT 1'; }
start_mariadb() {
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || install_pkgs mariadb-server mariadb-client
  if ! mysql_up >/dev/null 2>&1; then
    install -d -o mysql -g mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    # Without --user=mysql it dies silently as root.
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1
    wait_for mariadb 60 mysql_up
    log "mariadb: started"
  else
    log "mariadb: up"
  fi
  if ! mysql_tcp >/dev/null 2>&1; then
    # Root is socket-only on a fresh install: allow the empty password over TCP too.
    mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; FLUSH PRIVILEGES;"
    wait_for "mariadb root over tcp" 10 mysql_tcp
  fi
  # Several roles and test runs at once need more than the default 151 connections.
  mariadb -h127.0.0.1 -uroot -e 'SET GLOBAL max_connections = GREATEST(@@max_connections, 2000)'
}

start_redis
start_rabbitmq
start_mariadb

if [ "${1:-}" = chromium ]; then
  command -v chromium >/dev/null || install_pkgs chromium
  log "chromium: $(command -v chromium)"
  # Debian's prometheus: promtool (deploy/prometheus checks) and the server the
  # e2e test starts on a port of its own. Its package scripts start no daemon
  # here (see install_pkgs); nothing listens on 9090 unless you start it.
  { command -v promtool >/dev/null && command -v prometheus >/dev/null; } || install_pkgs prometheus
  log "prometheus: $(command -v prometheus)"
  # podman builds deploy/Containerfile in the image test (~35 s to install, once).
  command -v podman >/dev/null || install_pkgs podman
  log "podman: $(command -v podman)"
fi
