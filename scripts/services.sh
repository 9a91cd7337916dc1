#!/usr/bin/env bash
# Make sure MariaDB (or MySQL) and Redis answer on loopback; install them with
# apt-get when they are missing, start them when they are stopped.
# Usage: scripts/services.sh        (idempotent; prints one line per service)
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
need() { # need PACKAGE COMMAND
  command -v "$2" >/dev/null 2>&1 && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing $2: install $1 (no apt-get here)" >&2; exit 1
  fi
  [ "$apt_updated" = 1 ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$1" >/dev/null
}
wait_for() { # wait_for NAME CHECK...
  local name=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && { echo "$name: up"; return 0; }; sleep 0.5; done
  echo "$name did not come up" >&2; exit 1
}

# The TLS tests (tests/it/tls.rs) make a CA with openssl and put socat in
# front of the simulated Home Assistant.
need openssl openssl
need socat socat

# Redis
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  need redis-server redis-server
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/ha-fetchers-redis.log
fi
wait_for redis redis-cli -h 127.0.0.1 -p 6379 ping

# MariaDB: root over TCP with an empty password, as the tests expect.
mysql_ok() { mysql -h 127.0.0.1 -P 3306 -uroot -e 'select 1'; }
if ! mysql_ok >/dev/null 2>&1; then
  need mariadb-server mariadbd
  need mariadb-client mysql
  if [ ! -d /var/lib/mysql/mysql ]; then as_root mariadb-install-db --user=mysql >/dev/null; fi
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1
  for _ in $(seq 1 60); do mysql -uroot -e 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
  # A fresh install lets root in only over the socket; open it over TCP with no password.
  mysql -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); \
    CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; \
    GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;" 2>/dev/null || true
fi
wait_for mariadb mysql_ok
