# Helpers shared by scripts/run.sh and scripts/test.sh: start what Dumont needs when it is not
# already there. Debian/Ubuntu; installs through apt-get (with sudo when not root).

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  log "installing Debian packages: $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

port_open() {  # port_open HOST PORT
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for_port() {  # wait_for_port HOST PORT SECONDS NAME
  local deadline=$((SECONDS + $3))
  until port_open "$1" "$2"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$4 did not open $1:$2 within $3 s" >&2
      return 1
    fi
    sleep 0.2
  done
}

ensure_redis() {
  if port_open 127.0.0.1 6379; then return; fi
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis on 127.0.0.1:6379"
  mkdir -p var/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$PWD/var/redis" --logfile "$PWD/var/redis/redis.log"
  wait_for_port 127.0.0.1 6379 20 Redis
}

ensure_postgres() {
  if port_open 127.0.0.1 5432; then return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    local fresh=1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $version on 127.0.0.1:5432"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for_port 127.0.0.1 5432 30 PostgreSQL
  if [ -n "${fresh:-}" ]; then
    # A packaged cluster wants a password over TCP: give postgres the one DATABASE_URL uses.
    as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
  fi
}

ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
}
