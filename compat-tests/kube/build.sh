#!/usr/bin/env bash
# Builds kube-apiserver and kubectl 1.37.2 from the Go module proxy into OUTDIR.
#
#   compat-tests/kube/build.sh [OUTDIR]     (default: $HOME/.cache/oxcd/kube-1.37.2)
#
# The Go module in this folder requires k8s.io/kubernetes v1.37.2 and pins every staging
# module (k8s.io/api, k8s.io/apiserver, ...) to v0.37.2, see go.mod. The binaries are
# static (CGO_ENABLED=0), built with the tags and flags of kubernetes' own release build
# (hack/lib/golang.sh: selinux,notest,grpcnotrace, -trimpath, -s -w) and the version
# ldflags, so `kubectl version` and the apiserver's /version report v1.37.2.
# Nothing is done when both binaries already exist and report that version.
#
# Cold (empty module and build caches) on 2 cores: see README.md in this folder.
set -euo pipefail

KUBE_VERSION=v1.37.2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$HOME/.cache/oxcd/kube-${KUBE_VERSION#v}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if [[ -x "$out/kube-apiserver" && -x "$out/kubectl" ]] &&
  "$out/kubectl" version --client 2>/dev/null | grep -q "Client Version: ${KUBE_VERSION}\$" &&
  "$out/kube-apiserver" --version 2>/dev/null | grep -q "Kubernetes ${KUBE_VERSION}\$"; then
  echo "kube ${KUBE_VERSION}: kube-apiserver and kubectl already in $out"
  exit 0
fi

command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"

major="${KUBE_VERSION#v}"
major="${major%%.*}"
minor="${KUBE_VERSION#v*.}"
minor="${minor%%.*}"
# A fixed date keeps the build reproducible (the tag's date is not known offline).
build_date="${SOURCE_DATE_EPOCH:+$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)}"
build_date="${build_date:-1970-01-01T00:00:00Z}"

ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X '${pkg}.gitVersion=${KUBE_VERSION}'"
  ldflags+=" -X '${pkg}.gitMajor=${major}'"
  ldflags+=" -X '${pkg}.gitMinor=${minor}'"
  ldflags+=" -X '${pkg}.gitTreeState=clean'"
  ldflags+=" -X '${pkg}.buildDate=${build_date}'"
done

tmp="$(mktemp -d "$out/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

cd "$here"
echo "kube ${KUBE_VERSION}: building kube-apiserver and kubectl into $out (go $(go env GOVERSION))"
# -mod=readonly: go.mod and go.sum are complete; a build never rewrites them.
CGO_ENABLED=0 go build -mod=readonly -trimpath \
  -tags selinux,notest,grpcnotrace \
  -ldflags "$ldflags" \
  -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kubectl

mv -f "$tmp/kube-apiserver" "$out/kube-apiserver"
mv -f "$tmp/kubectl" "$out/kubectl"
"$out/kubectl" version --client
"$out/kube-apiserver" --version
