#!/usr/bin/env bash
# make run: Redis, the devcloud emulator, web, a Celery worker and beat, and a demo user.
# Everything stops with Ctrl-C. Logs are in var/log/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_redis
mkdir -p var/log

export DEBUG="${DEBUG:-true}"
export DATABASE_URL="${DATABASE_URL:-sqlite:///var/dumont.sqlite3}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
port="${PORT:-8000}"
# Agents on devcloud machines run on this host, so they reach the web server on loopback.
export SITE_URL="${SITE_URL:-http://127.0.0.1:$port}"
devcloud_port="${DEVCLOUD_PORT:-8800}"

pids=()
cleanup() {
  trap - INT TERM EXIT
  log "stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

demo_user=false
if [ -z "${VAST_API_KEY:-}" ] && [ -z "${VAST_API_URL:-}" ]; then
  # No real vast.ai key: rent machines from the local emulator instead.
  demo_user=true
  [ -f var/devcloud-key ] || .venv/bin/python -c 'import secrets; print(secrets.token_hex(16))' > var/devcloud-key
  export VAST_API_KEY="$(cat var/devcloud-key)"
  export VAST_API_URL="http://127.0.0.1:$devcloud_port"
  # devcloud machines are directories on this host: the workspace lives in each machine's home,
  # and the agent's dependencies are uploaded with it instead of fetched by the machine.
  export DUMONT_WORKSPACE_PATH="${DUMONT_WORKSPACE_PATH:-~/workspace}"
  export DUMONT_AGENT_UPLOAD_DEPENDENCIES="${DUMONT_AGENT_UPLOAD_DEPENDENCIES:-true}"
  log "starting devcloud (the vast.ai emulator) on $VAST_API_URL"
  .venv/bin/python -m devcloud --host 127.0.0.1 --port "$devcloud_port" --state-dir var/devcloud \
    --api-key "$VAST_API_KEY" \
    --boot-delay "${DEVCLOUD_BOOT_DELAY:-lognormal:median=60,p90=180}" \
    --time-scale "${DEVCLOUD_TIME_SCALE:-0.1}" > var/log/devcloud.log 2>&1 &
  pids+=($!)
  wait_for_port 127.0.0.1 "$devcloud_port" 30 devcloud
fi

if ! port_open 127.0.0.1 8333; then
  # Local object storage for workspace snapshots (Cloudflare R2 in production). It checks keys:
  # the control plane holds the bucket's (generated into var/), each machine gets its own,
  # scoped to its workspace, from SeaweedFS's IAM API (DUMONT_SNAPSHOT_CREDENTIALS=scoped).
  log "starting SeaweedFS (S3 on http://127.0.0.1:8333, data in var/seaweedfs)"
  mkdir -p var/seaweedfs
  [ -f var/s3-secret ] || .venv/bin/python -c 'import secrets; print(secrets.token_hex(20))' > var/s3-secret
  export DUMONT_SNAPSHOT_S3_ACCESS_KEY="${DUMONT_SNAPSHOT_S3_ACCESS_KEY:-dumont-control-plane}"
  export DUMONT_SNAPSHOT_S3_SECRET_KEY="${DUMONT_SNAPSHOT_S3_SECRET_KEY:-$(cat var/s3-secret)}"
  export DUMONT_SNAPSHOT_CREDENTIALS="${DUMONT_SNAPSHOT_CREDENTIALS:-scoped}"
  .venv/bin/python - > var/seaweedfs/s3.json <<'JSON'
import json, os
print(json.dumps({"identities": [{"name": "control-plane", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                  "credentials": [{"accessKey": os.environ["DUMONT_SNAPSHOT_S3_ACCESS_KEY"],
                                   "secretKey": os.environ["DUMONT_SNAPSHOT_S3_SECRET_KEY"]}]}]}))
JSON
  .venv/bin/weed mini -dir="$PWD/var/seaweedfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.telemetry=false -bucket=dumont -s3.config="$PWD/var/seaweedfs/s3.json" -s3.iam.readOnly=false \
    > var/log/seaweedfs.log 2>&1 &
  pids+=($!)
  wait_for_port 127.0.0.1 8333 60 SeaweedFS
else
  log "an S3 server already answers on 127.0.0.1:8333: using it with DUMONT_SNAPSHOT_S3_ACCESS_KEY/SECRET_KEY" \
    "(machines get those bucket keys unless DUMONT_SNAPSHOT_CREDENTIALS=scoped and it serves IAM)"
fi

log "preparing the database"
.venv/bin/python manage.py migrate --no-input -v 0
if $demo_user; then
  .venv/bin/python manage.py demo_user
  login="demo / dumont-demo"
else
  # Real machines are rented on your account: no user with a known password.
  login="a user of yours (create one: .venv/bin/python manage.py createsuperuser)"
fi

# Started again whenever it exits, as systemd's Restart=always does in production: a Celery
# worker exits when it loses Redis (kombu's Redis transport), and must come back on its own.
supervise() {
  local name=$1 logfile=$2
  shift 2
  (
    child=""
    trap '[ -n "$child" ] && kill "$child" 2>/dev/null; wait; exit 0' INT TERM
    while :; do
      "$@" >> "$logfile" 2>&1 &
      child=$!
      status=0
      wait "$child" || status=$?
      echo "$name exited (status $status); starting it again in 1 s" >> "$logfile"
      sleep 1
    done
  ) &
  pids+=($!)
}

log "starting the Celery worker and beat (logs: var/log/worker.log, var/log/beat.log)"
: > var/log/worker.log
: > var/log/beat.log
supervise worker var/log/worker.log .venv/bin/celery -A dumont worker --concurrency 2 --loglevel INFO
supervise beat var/log/beat.log .venv/bin/celery -A dumont beat --loglevel INFO --schedule var/celerybeat-schedule

log "starting the web server"
.venv/bin/python manage.py runserver "127.0.0.1:$port" --noreload > var/log/web.log 2>&1 &
pids+=($!)
wait_for_port 127.0.0.1 "$port" 30 "the web server"

cat <<INFO

  Dumont is running:   http://127.0.0.1:$port/
  log in as            $login
  admin                http://127.0.0.1:$port/admin/  (same login)
  API docs             http://127.0.0.1:$port/api/v1/docs/
  machines from        $VAST_API_URL
  snapshots (S3)       http://127.0.0.1:8333  bucket dumont

  Ctrl-C stops everything.
INFO

wait -n "${pids[@]}"
echo "a process exited; see var/log/" >&2
