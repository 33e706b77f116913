#!/usr/bin/env bash
# fleetgate: one-command self-host install for Debian and Ubuntu, as root.
#
# Installs what is missing (Docker engine, Redis, debootstrap, a Python virtual environment with fleetgate), builds
# the sandbox images offline, writes the settings file, initialises the database, starts the services and prints the
# console URL and a one-time admin token. Running it again changes nothing that works. `./install.sh --help`.
set -Eeuo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEFAULT_ENV_FILE=/etc/fleetgate/fleetgate.env
DEFAULT_HOME=/var/lib/fleetgate
DEFAULT_BIND=127.0.0.1:8700
DEFAULT_REDIS_URL=redis://127.0.0.1:6379/0
WAIT_S=60

PREFIX=/opt/fleetgate
ENV_FILE=$DEFAULT_ENV_FILE
OPT_HOME=""
OPT_BIND=""
OPT_REDIS_URL=""
PYTHON=python3
UNIT=""
LINK=1
START=1
IMAGES=1
DEPS_ONLY=0
GVISOR=1
USE_SYSTEMD=auto
DAEMON_JSON=/etc/docker/daemon.json

usage() {
  cat <<EOF
Usage: ./install.sh [OPTIONS]

Install fleetgate on this machine (Debian or Ubuntu, as root) and start it. Safe to run again: it only
changes what is missing or out of date, and upgrades fleetgate from this checkout.

Options:
  --prefix DIR        where the virtual environment goes (default /opt/fleetgate; venv at DIR/venv)
  --home DIR          FLEETGATE_HOME: database, sockets, keys, logs (default $DEFAULT_HOME)
  --bind HOST:PORT    FLEETGATE_BIND: where the API and console listen (default $DEFAULT_BIND)
  --redis-url URL     FLEETGATE_REDIS_URL (default $DEFAULT_REDIS_URL)
  --env-file PATH     the settings file to write and use (default $DEFAULT_ENV_FILE)
  --python PATH       the Python (3.11 or newer) for the virtual environment (default python3)
  --unit NAME         systemd unit name (default fleetgate, or fleetgate-<hash> with a non-default --env-file)
  --no-systemd        start with \`fleetgate up --detach\` even where systemd runs
  --no-link           do not put \`fleetgate\` into /usr/local/bin
  --no-start          do not start the controller
  --skip-images       do not build the sandbox images
  --no-gvisor         run sandboxes under runc: neither install nor use gVisor (FLEETGATE_SANDBOX_RUNTIME=runc)
  --deps-only         only install and start the system services (Docker engine, Redis, debootstrap)
  -h, --help          show this help

--home, --bind and --redis-url are written to the settings file; values already in it are kept unless given
again. Other FLEETGATE_* variables in the environment are ignored: put settings into the file.
EOF
}

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
  printf 'install.sh: error: %s\n' "$*" >&2
  exit 1
}
on_error() {
  printf 'install.sh: error: a step failed (exit %s, line %s); see the output above\n' "$1" "$2" >&2
}
trap 'on_error $? $LINENO' ERR

need_value() {
  if [ "$#" -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --*=*)
      opt=${1%%=*}
      val=${1#*=}
      shift
      set -- "$opt" "$val" "$@"
      continue
      ;;
  esac
  case "$1" in
    --prefix) need_value "$@"; PREFIX=$2; shift ;;
    --home) need_value "$@"; OPT_HOME=$2; shift ;;
    --bind) need_value "$@"; OPT_BIND=$2; shift ;;
    --redis-url) need_value "$@"; OPT_REDIS_URL=$2; shift ;;
    --env-file) need_value "$@"; ENV_FILE=$2; shift ;;
    --python) need_value "$@"; PYTHON=$2; shift ;;
    --unit) need_value "$@"; UNIT=$2; shift ;;
    --no-systemd) USE_SYSTEMD=no ;;
    --no-link) LINK=0 ;;
    --no-start) START=0 ;;
    --skip-images) IMAGES=0 ;;
    --deps-only) DEPS_ONLY=1 ;;
    --no-gvisor) GVISOR=0 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  shift
done

[ "$(id -u)" -eq 0 ] || die "run install.sh as root (it installs system packages and services)"
command -v apt-get >/dev/null || die "install.sh supports Debian and Ubuntu (apt-get not found)"

case "$PREFIX" in /*) ;; *) PREFIX="$(pwd)/$PREFIX" ;; esac
case "$ENV_FILE" in /*) ;; *) ENV_FILE="$(pwd)/$ENV_FILE" ;; esac
case "$OPT_HOME" in "" | /*) ;; *) OPT_HOME="$(pwd)/$OPT_HOME" ;; esac
VENV=$PREFIX/venv
FLEETGATE=$VENV/bin/fleetgate

# Only the settings file (named by FLEETGATE_ENV_FILE) configures the fleetgate commands run below, so that two
# installs side by side cannot leak settings into each other through the environment.
for var in $(compgen -e); do
  case "$var" in
    FLEETGATE_*)
      note "ignoring $var from the environment (settings come from $ENV_FILE)"
      unset "$var"
      ;;
  esac
done
export FLEETGATE_ENV_FILE=$ENV_FILE

if [ "$USE_SYSTEMD" = auto ]; then
  if [ -d /run/systemd/system ]; then USE_SYSTEMD=yes; else USE_SYSTEMD=no; fi
fi

# --- settings ------------------------------------------------------------------------------------------------------

valid_value() {
  case "$2" in
    *[[:space:]\"\'\\\$\`]* | "") die "$1 must be a non-empty value without spaces, quotes, backslashes or \$" ;;
  esac
}
[ -z "$OPT_HOME" ] || valid_value --home "$OPT_HOME"
if [ -n "$OPT_BIND" ]; then
  valid_value --bind "$OPT_BIND"
  [[ "$OPT_BIND" =~ ^.+:[0-9]+$ ]] || die "--bind must look like 127.0.0.1:8700, got $OPT_BIND"
fi
if [ -n "$OPT_REDIS_URL" ]; then
  valid_value --redis-url "$OPT_REDIS_URL"
  [[ "$OPT_REDIS_URL" =~ ^(rediss?|unix):// ]] || die "--redis-url must start with redis://, rediss:// or unix://"
fi

# The value of KEY in the settings file (the last assignment wins), without quotes; empty if absent.
env_get() {
  local key=$1 line value=""
  [ -f "$ENV_FILE" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line#export }
    if [[ "$line" == "$key="* ]]; then
      value=${line#*=}
      value=${value%\"}
      value=${value#\"}
      value=${value%\'}
      value=${value#\'}
    fi
  done <"$ENV_FILE"
  printf '%s' "$value"
}

# Set KEY=VALUE in the settings file: replace its line when `force` is given or append it when absent.
# Every other line stays as it was.
env_set() {
  local key=$1 value=$2 mode=${3:-} line found=0 tmp
  mkdir -p "$(dirname "$ENV_FILE")"
  if [ ! -f "$ENV_FILE" ]; then
    (umask 077 && printf '# fleetgate settings (FLEETGATE_*), written by install.sh; edit freely.\n' >"$ENV_FILE")
  fi
  tmp=$(mktemp)
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ "${line#export }" == "$key="* ]]; then
      found=1
      if [ "$mode" = force ]; then line="$key=$value"; fi
    fi
    printf '%s\n' "$line" >>"$tmp"
  done <"$ENV_FILE"
  [ "$found" -eq 1 ] || printf '%s=%s\n' "$key" "$value" >>"$tmp"
  if ! cmp -s "$tmp" "$ENV_FILE"; then
    cat "$tmp" >"$ENV_FILE" # keeps the file's owner and mode
  fi
  rm -f "$tmp"
}

HOME_DIR=${OPT_HOME:-$(env_get FLEETGATE_HOME)}
HOME_DIR=${HOME_DIR:-$DEFAULT_HOME}
BIND=${OPT_BIND:-$(env_get FLEETGATE_BIND)}
BIND=${BIND:-$DEFAULT_BIND}
REDIS_URL=${OPT_REDIS_URL:-$(env_get FLEETGATE_REDIS_URL)}
REDIS_URL=${REDIS_URL:-$DEFAULT_REDIS_URL}

# --- system packages -----------------------------------------------------------------------------------------------

apt_install() {
  local missing=("$@")
  say "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
}

system_packages() {
  local missing=()
  { command -v docker && command -v dockerd; } >/dev/null || missing+=(docker.io)
  { command -v redis-server && command -v redis-cli; } >/dev/null || missing+=(redis-server)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v tar >/dev/null || missing+=(tar)
  command -v python3 >/dev/null || missing+=(python3)
  if [ "$DEPS_ONLY" -eq 0 ] && [ "$PYTHON" = python3 ]; then
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  fi
  if [ "${#missing[@]}" -eq 0 ]; then
    say "system packages: all present"
  else
    apt_install "${missing[@]}"
  fi
}

# wait_for WHAT LOG COMMAND...: poll COMMAND for up to WAIT_S seconds; fail with the tail of LOG (a file, or
# unit:NAME for a systemd unit's journal).
wait_for() {
  local what=$1 log=$2 i
  shift 2
  for ((i = 0; i < WAIT_S; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  printf 'install.sh: error: %s did not answer within %s s\n' "$what" "$WAIT_S" >&2
  if [[ "$log" == unit:* ]]; then
    printf -- '--- last lines of journalctl -u %s ---\n' "${log#unit:}" >&2
    journalctl -u "${log#unit:}" -n 25 --no-pager >&2 || true
  elif [ -n "$log" ] && [ -f "$log" ]; then
    printf -- '--- last lines of %s ---\n' "$log" >&2
    tail -n 25 "$log" >&2 || true
  fi
  exit 1
}

docker_up() { timeout 20 docker info; }

docker_engine() {
  if docker_up >/dev/null 2>&1; then
    say "Docker engine: answering"
    return
  fi
  local log=/var/log/fleetgate-dockerd.log
  if [ "$USE_SYSTEMD" = yes ] && [ -d /run/systemd/system ]; then
    say "starting the Docker engine (systemctl enable --now docker)"
    systemctl enable --now docker >/dev/null
    log=unit:docker
  else
    say "starting the Docker engine in the background (log: $log)"
    setsid -f nohup dockerd >>"$log" 2>&1 </dev/null
  fi
  wait_for "the Docker engine" "$log" docker_up
}

# gVisor: Debian's runsc, registered with the Docker engine as the runtime "runsc". Its arguments: Docker's "none"
# network is refused without --network=none, and the sandbox cannot connect to its bind-mounted runtime socket
# without --host-uds=open. Where any step fails, sandboxes run under runc and `fleetgate status` says why.
gvisor_registered() { timeout 20 docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; }

register_runsc() {
  python3 - "$DAEMON_JSON" "$(command -v runsc)" <<'PY'
import json, os, sys

path, runsc = sys.argv[1], sys.argv[2]
try:
    with open(path) as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}
except ValueError as e:
    sys.exit(f"{path} is not valid JSON ({e}); add the runsc runtime to it by hand (README, 'gVisor')")
runtime = {"path": runsc, "runtimeArgs": ["--network=none", "--host-uds=open"]}
config.setdefault("runtimes", {})["runsc"] = runtime
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path + ".fleetgate-new", "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
os.replace(path + ".fleetgate-new", path)
PY
}

reload_docker() {
  if [ "$USE_SYSTEMD" = yes ] && [ -d /run/systemd/system ] && systemctl is-active --quiet docker; then
    systemctl reload docker
    return
  fi
  local pid
  pid=$(cat /var/run/docker.pid 2>/dev/null || pidof dockerd || true)
  [[ "$pid" =~ ^[0-9]+$ ]] || {
    note "cannot tell which dockerd to reload (no /var/run/docker.pid); restart it to pick up $DAEMON_JSON"
    return 1
  }
  kill -HUP "$pid" # dockerd reloads its runtimes on SIGHUP, without stopping a container
}

gvisor_runtime() {
  if [ "$GVISOR" -eq 0 ]; then
    say "gVisor: not used (--no-gvisor); sandboxes run under runc"
    return
  fi
  if ! command -v runsc >/dev/null && ! apt_install runsc; then
    note "gVisor: the runsc package could not be installed; sandboxes run under runc (fleetgate status says so)"
    return
  fi
  if gvisor_registered; then
    say "gVisor: runsc is registered with the Docker engine"
    return
  fi
  say "gVisor: registering runsc with the Docker engine ($DAEMON_JSON) and reloading it"
  if ! register_runsc || ! reload_docker; then
    note "gVisor: not registered; sandboxes run under runc (fleetgate status says so)"
    return
  fi
  local i
  for ((i = 0; i < 20; i++)); do
    gvisor_registered && return
    sleep 0.5
  done
  note "gVisor: the Docker engine did not pick up runsc; sandboxes run under runc (fleetgate status says so)"
}

REDIS_HOST=""
REDIS_PORT=""
redis_target() {
  if [[ "$REDIS_URL" =~ ^rediss?://([^@/]*@)?(\[[^]/]*\]|[^:/]*)(:([0-9]+))?(/.*)?$ ]]; then
    REDIS_HOST=${BASH_REMATCH[2]:-127.0.0.1}
    REDIS_PORT=${BASH_REMATCH[4]:-6379}
    REDIS_HOST=${REDIS_HOST#[}
    REDIS_HOST=${REDIS_HOST%]}
  fi
}

redis_up() {
  local reply
  reply=$(timeout 10 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>&1) || return 1
  # A password-protected Redis answers NOAUTH: it is up, and fleetgate authenticates with the URL's password.
  [[ "$reply" == *PONG* || "$reply" == *NOAUTH* ]]
}

redis_service() {
  redis_target
  case "$REDIS_HOST" in
    127.0.0.1 | localhost | ::1) ;;
    *)
      say "Redis: $REDIS_URL is not on this machine; not starting one (fleetgate checks it when it starts)"
      return
      ;;
  esac
  if redis_up; then
    say "Redis: answering on $REDIS_HOST:$REDIS_PORT"
    return
  fi
  local suffix="" log as=()
  [ "$REDIS_PORT" = 6379 ] || suffix="-$REDIS_PORT"
  if [ "$USE_SYSTEMD" = yes ] && [ "$REDIS_PORT" = 6379 ] && [ -d /run/systemd/system ]; then
    say "starting Redis (systemctl enable --now redis-server)"
    systemctl enable --now redis-server >/dev/null
    log=unit:redis-server
  else
    mkdir -p /var/lib/redis /var/log/redis /run/redis
    if id redis >/dev/null 2>&1; then
      chown redis: /run/redis
      [ "$(stat -c %U /var/lib/redis)" = redis ] && [ "$(stat -c %U /var/log/redis)" = redis ] && as=(runuser -u redis --)
    fi
    log=/var/log/redis/redis-server$suffix.log
    local bind=127.0.0.1
    [ "$REDIS_HOST" != ::1 ] || bind=::1
    local conf=()
    [ -r /etc/redis/redis.conf ] && conf=(/etc/redis/redis.conf)
    say "starting Redis in the background on $bind:$REDIS_PORT (log: $log)"
    "${as[@]}" redis-server "${conf[@]}" --daemonize yes --bind "$bind" --port "$REDIS_PORT" \
      --dir /var/lib/redis --dbfilename "dump$suffix.rdb" --logfile "$log" \
      --pidfile "/run/redis/redis-server$suffix.pid" >/dev/null
  fi
  wait_for "Redis on $REDIS_HOST:$REDIS_PORT" "$log" redis_up
}

system_packages
docker_engine
gvisor_runtime
if [[ "$REDIS_URL" == unix://* ]]; then
  say "Redis: using the unix socket in $REDIS_URL; not starting one"
else
  redis_service
fi

if [ "$DEPS_ONLY" -eq 1 ]; then
  say "system services are ready (--deps-only)"
  exit 0
fi

# --- fleetgate into its virtual environment ------------------------------------------------------------------------

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
  die "fleetgate needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1 || echo missing) (use --python)"

if "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  say "virtual environment: $VENV"
else
  say "creating the virtual environment $VENV"
  rm -rf "$VENV"
  mkdir -p "$PREFIX"
  "$PYTHON" -m venv "$VENV"
fi

# Build from a clean copy of the checkout: no stale build/ leftovers, and nothing is written into the checkout.
BUILD=$(mktemp -d "$PREFIX/.build.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
tar -C "$SRC" -cf - \
  --exclude=./.git --exclude=./.venv --exclude=./venv --exclude=./build --exclude=./dist --exclude='*.egg-info' \
  --exclude=__pycache__ --exclude='*.pyc' --exclude=./.mypy_cache --exclude=./.ruff_cache \
  --exclude=./.pytest_cache --exclude=./.hypothesis --exclude=./tests --exclude=./bench \
  --exclude=./test-artifacts --exclude=./node_modules . | tar -C "$BUILD" -xf -
SOURCE_DIGEST=$(cd "$BUILD" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
DIGEST_FILE=$PREFIX/source.sha256
OLD_DIGEST=$(cat "$DIGEST_FILE" 2>/dev/null || true)

say "installing fleetgate from $SRC into $VENV"
"$VENV/bin/pip" install --quiet --upgrade "$BUILD"
"$FLEETGATE" --help >/dev/null || die "the installed fleetgate command does not run"
CHANGED=0
[ -z "$OLD_DIGEST" ] || [ "$OLD_DIGEST" = "$SOURCE_DIGEST" ] || CHANGED=1

if [ "$LINK" -eq 1 ]; then
  if [ "$ENV_FILE" = "$DEFAULT_ENV_FILE" ]; then
    say "linking /usr/local/bin/fleetgate -> $FLEETGATE"
    ln -sfn "$FLEETGATE" /usr/local/bin/fleetgate
  else
    say "writing /usr/local/bin/fleetgate (runs $FLEETGATE with $ENV_FILE)"
    # shellcheck disable=SC2016 # the wrapper expands FLEETGATE_ENV_FILE and "$@" when it runs
    wrapper=$(printf '#!/bin/sh\nFLEETGATE_ENV_FILE="${FLEETGATE_ENV_FILE:-%s}" exec "%s" "$@"\n' "$ENV_FILE" "$FLEETGATE")
    if [ "$(cat /usr/local/bin/fleetgate 2>/dev/null || true)" != "$wrapper" ]; then
      rm -f /usr/local/bin/fleetgate
      printf '%s\n' "$wrapper" >/usr/local/bin/fleetgate
      chmod 755 /usr/local/bin/fleetgate
    fi
  fi
fi

# --- settings, images, database ------------------------------------------------------------------------------------

say "settings: $ENV_FILE (home $HOME_DIR, bind $BIND, redis $REDIS_URL)"
if [ -n "$OPT_HOME" ]; then env_set FLEETGATE_HOME "$HOME_DIR" force; else env_set FLEETGATE_HOME "$HOME_DIR"; fi
if [ -n "$OPT_BIND" ]; then env_set FLEETGATE_BIND "$BIND" force; else env_set FLEETGATE_BIND "$BIND"; fi
if [ -n "$OPT_REDIS_URL" ]; then
  env_set FLEETGATE_REDIS_URL "$REDIS_URL" force
else
  env_set FLEETGATE_REDIS_URL "$REDIS_URL"
fi
[ "$GVISOR" -eq 1 ] || env_set FLEETGATE_SANDBOX_RUNTIME runc force

if [ "$IMAGES" -eq 1 ]; then
  say "building the sandbox images (skipped when current)"
  "$FLEETGATE" images build
fi

say "initialising the database in $HOME_DIR"
TOKEN=""
init_out=$("$FLEETGATE" init 2>&1) || {
  printf '%s\n' "$init_out" >&2
  die "fleetgate init failed"
}
if [[ "$init_out" =~ (fg_[A-Za-z0-9_-]+) ]]; then
  TOKEN=${BASH_REMATCH[1]}
else
  note "an admin exists already"
fi

# --- services ------------------------------------------------------------------------------------------------------

if [ -z "$UNIT" ]; then
  if [ "$ENV_FILE" = "$DEFAULT_ENV_FILE" ]; then
    UNIT=fleetgate
  else
    UNIT=fleetgate-$(printf '%s' "$ENV_FILE" | sha256sum | cut -c1-8)
  fi
fi

start_systemd() {
  local unit_file=/etc/systemd/system/$UNIT.service tmp
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
# Written by fleetgate's install.sh; running it again rewrites this file.
[Unit]
Description=fleetgate controller (API, console, runtime gateway, Celery worker and beat)
Wants=docker.service redis-server.service
After=network-online.target docker.service redis-server.service

[Service]
Type=simple
Environment=FLEETGATE_ENV_FILE=$ENV_FILE
EnvironmentFile=$ENV_FILE
ExecStart=$FLEETGATE up
Restart=on-failure
RestartSec=3
TimeoutStopSec=40

[Install]
WantedBy=multi-user.target
EOF
  local changed=0
  if ! cmp -s "$tmp" "$unit_file"; then
    install -m 644 "$tmp" "$unit_file"
    systemctl daemon-reload
    changed=1
  fi
  rm -f "$tmp"
  say "starting the systemd unit $UNIT.service"
  systemctl enable --quiet "$UNIT.service"
  if [ "$changed" -eq 1 ] || [ "$CHANGED" -eq 1 ]; then
    systemctl restart "$UNIT.service"
  else
    systemctl start "$UNIT.service"
  fi
  wait_for "fleetgate at http://$BIND" "unit:$UNIT" "$FLEETGATE" status
}

start_detached() {
  if [ "$CHANGED" -eq 1 ]; then
    say "fleetgate changed: restarting the controller"
    "$FLEETGATE" down
  fi
  say "starting the controller in the background (fleetgate up --detach)"
  if ! "$FLEETGATE" up --detach; then
    if [ -f "$HOME_DIR/logs/fleetgate.log" ]; then
      printf -- '--- last lines of %s ---\n' "$HOME_DIR/logs/fleetgate.log" >&2
      tail -n 25 "$HOME_DIR/logs/fleetgate.log" >&2
    fi
    die "the controller did not start"
  fi
}

if [ "$START" -eq 1 ]; then
  if [ "$USE_SYSTEMD" = yes ]; then start_systemd; else start_detached; fi
  # Recorded once the controller runs this code, so that an interrupted upgrade still restarts it next time.
  printf '%s\n' "$SOURCE_DIGEST" >"$DIGEST_FILE"
fi

# --- done ----------------------------------------------------------------------------------------------------------

HOST=${BIND%:*}
PORT=${BIND##*:}
case "$HOST" in
  0.0.0.0 | "[::]" | ::)
    addr=$(hostname -I 2>/dev/null | awk '{print $1}')
    URL="http://${addr:-127.0.0.1}:$PORT"
    ;;
  *) URL="http://$BIND" ;;
esac
CLI=fleetgate
[ "$LINK" -eq 1 ] || CLI=$FLEETGATE
[ "$ENV_FILE" = "$DEFAULT_ENV_FILE" ] || [ "$LINK" -eq 1 ] || CLI="FLEETGATE_ENV_FILE=$ENV_FILE $CLI"

echo
if [ "$START" -eq 1 ]; then
  echo "fleetgate is up: console at $URL"
else
  echo "fleetgate is installed (not started: --no-start); start it with: $CLI up --detach"
  echo "console will be at $URL"
fi
if [ -n "$TOKEN" ]; then
  echo "admin token (shown once): $TOKEN"
  echo "keep it safe; it signs you in to the console and the API (FLEETGATE_TOKEN)"
else
  echo "an admin exists already; mint a new admin token with: $CLI token create --name NAME --role admin"
fi
echo "settings: $ENV_FILE; state and logs: $HOME_DIR"
