#!/usr/bin/env bash
# Makes a fresh Debian machine ready for envtasks' demo and tests: a Docker
# engine, a registry on 127.0.0.1:5000, a local Python base image, and a
# virtualenv in .venv with envtasks installed. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE=${SETUP_STATE_DIR:-/var/tmp/envtasks-setup}
BASE_IMAGE=${PYTHON_BASE_IMAGE:-envtasks/python-base:bookworm}
mkdir -p "$STATE"

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx httpd || need_apt+=(busybox-static)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v git >/dev/null || need_apt+=(git)
command -v curl >/dev/null || need_apt+=(curl)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)   # the tests reach an engine over ssh://
command -v ip >/dev/null || need_apt+=(iproute2)        # the tests' second engine gets its own bridge
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq 1 $((limit * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "setup: $what did not come up; see $STATE/*.log" >&2; return 1
}

if ! docker info >/dev/null 2>&1; then
  echo "setup: starting dockerd"
  nohup dockerd --host=unix:///var/run/docker.sock >"$STATE/dockerd.log" 2>&1 &
  wait_for 60 dockerd docker info
fi

if ! curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1; then
  echo "setup: starting registry on 127.0.0.1:5000"
  mkdir -p "$STATE/registry-data"
  cat >"$STATE/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry-data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YML
  nohup docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 &
  wait_for 30 registry curl -fsS http://127.0.0.1:5000/v2/
fi

if ! docker run --rm "$BASE_IMAGE" python3 -c 'import http.server, json' >/dev/null 2>&1; then
  echo "setup: making $BASE_IMAGE with debootstrap (about a minute)"
  mirror=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
           | grep -v security | head -n1 | sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//; s/ .*//' || true)
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase --include=python3-minimal,libpython3.11-stdlib bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" \
    >"$STATE/debootstrap.log" 2>&1
  tar -C "$rootfs" -c . | docker import -c 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi

if [ ! -x .venv/bin/invoke ] || ! .venv/bin/python -c 'import envtasks' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: installing envtasks into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --upgrade pip >"$STATE/pip.log" 2>&1 || { cat "$STATE/pip.log" >&2; exit 1; }
  .venv/bin/pip install -e ".[dev]" >>"$STATE/pip.log" 2>&1 || { cat "$STATE/pip.log" >&2; exit 1; }
  touch .venv/.installed
fi
echo "setup: ready (engine: $(docker version -f '{{.Server.Version}}'), registry: 127.0.0.1:5000, base image: $BASE_IMAGE)"
