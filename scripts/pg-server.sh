#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests and benchmarks.
#
#   scripts/pg-server.sh run [--durable] -- COMMAND [ARGS...]
#       initdb into a new temporary directory, start the server on a free 127.0.0.1 port,
#       run COMMAND with ORGDB_TEST_POSTGRES_URL (and ORGDB_TEST_POSTGRES_DATA) set, then stop
#       the server and remove the directory, also when COMMAND fails or the script is
#       interrupted. Exits with COMMAND's status. Without --durable the server runs with
#       fsync off (tests); with it, as a production server would (benchmarks).
#       ORGDB_PG_SETTINGS adds server settings (`-c name=value ...`), e.g.
#       `-c shared_preload_libraries=pg_stat_statements` to see each statement's server time.
#   scripts/pg-server.sh restart
#       Restarts the server of the enclosing `run` (tests of reconnection use it), keeping its
#       port and data.
#
# PostgreSQL comes from Debian's `postgresql` package (.ci/run installs it when missing). The
# server refuses to run as root, so as root it runs as the `postgres` system user.
set -euo pipefail

bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ]; then
      echo "$dir"
      return
    fi
  done
  echo "error: PostgreSQL's initdb was not found (apt-get install postgresql)" >&2
  exit 1
}

# Runs a server program as the unprivileged owner of the data directory.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A certificate authority and a server certificate for 127.0.0.1, valid for two days.
make_certificates() {
  local dir=$1
  (
    cd "$dir" &&
      openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
        -subj "/CN=orgdb throwaway test CA" &&
      openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
        -subj "/CN=127.0.0.1" &&
      printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext &&
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out server.crt -days 2 -extfile server.ext &&
      chmod 600 server.key &&
      if [ "$(id -u)" -eq 0 ]; then chown postgres: server.key server.crt; fi
  ) >"$dir/certificates.log" 2>&1
}

cmd_run() {
  local durable=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --durable) durable=1; shift ;;
      --) shift; break ;;
      *) echo "usage: $0 run [--durable] -- COMMAND..." >&2; exit 2 ;;
    esac
  done
  [ $# -gt 0 ] || { echo "usage: $0 run [--durable] -- COMMAND..." >&2; exit 2; }

  local bin dir port
  bin=$(bindir)
  dir=$(mktemp -d /tmp/orgdb-pg.XXXXXX)
  chmod 755 "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$dir"
  fi
  cleanup() {
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  port=$(free_port)
  local settings="-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300"
  # TLS with a throwaway authority, when openssl is there (the tests of sslmode=require and
  # sslrootcert use ORGDB_TEST_POSTGRES_CA); plain connections stay allowed.
  if command -v openssl >/dev/null 2>&1 && make_certificates "$dir"; then
    settings="$settings -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
    export ORGDB_TEST_POSTGRES_CA="$dir/ca.crt"
  fi
  if [ "$durable" -eq 0 ]; then
    settings="$settings -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  settings="$settings ${ORGDB_PG_SETTINGS:-}"
  echo "$settings" >"$dir/settings"
  as_owner "$bin/pg_ctl" -D "$dir/data" -o "$settings" -l "$dir/server.log" -w start >/dev/null ||
    { cat "$dir/server.log" >&2; exit 1; }
  echo "PostgreSQL on 127.0.0.1:$port (data in $dir)" >&2

  export ORGDB_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  export ORGDB_TEST_POSTGRES_DATA="$dir"
  export ORGDB_PG_SERVER_SCRIPT
  ORGDB_PG_SERVER_SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
  local status=0
  "$@" || status=$?
  exit "$status"
}

cmd_restart() {
  local dir="${ORGDB_TEST_POSTGRES_DATA:?restart runs inside scripts/pg-server.sh run}"
  local bin
  bin=$(bindir)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null
  as_owner "$bin/pg_ctl" -D "$dir/data" -o "$(cat "$dir/settings")" -l "$dir/server.log" -w start >/dev/null
}

case "${1:-}" in
  run) shift; cmd_run "$@" ;;
  restart) shift; cmd_restart "$@" ;;
  *) echo "usage: $0 run [--durable] -- COMMAND... | $0 restart" >&2; exit 2 ;;
esac
