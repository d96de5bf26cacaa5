#!/usr/bin/env bash
# Checks deploy/ (Prometheus rules and configs, compose.yaml, the Helm chart, the Dockerfiles)
# with tools Debian 12 packages; scripts/install-deps.sh installs them. Takes a few seconds.
#   scripts/check-deploy.sh [build/switchyard]
# With the gateway binary (the default build/switchyard, when built) the configs that
# compose.yaml mounts and the chart's ConfigMap are also loaded by `switchyard check-config`.
# What this can and cannot validate: deploy/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v promtool >/dev/null 2>&1 || missing+=("promtool (Debian package prometheus)")
command -v haproxy >/dev/null 2>&1 || missing+=("haproxy (Debian package haproxy)")
command -v docker-compose >/dev/null 2>&1 || missing+=("docker-compose (Debian package docker-compose)")
command -v go >/dev/null 2>&1 || missing+=("go (Debian package golang-go)")
[[ -d /usr/share/gocode/src/github.com/Masterminds/sprig ]] ||
  missing+=("Sprig for Go (Debian package golang-github-masterminds-sprig-dev)")
# Debian's python3-yaml serves Debian's python3, which need not be the first on PATH.
python=
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import yaml' 2>/dev/null; then python=$p; break; fi
done
[[ -n "$python" ]] || missing+=("PyYAML (Debian package python3-yaml)")
if ((${#missing[@]})); then
  printf 'check-deploy: missing %s; run scripts/install-deps.sh\n' "${missing[@]}" >&2
  exit 1
fi

binary=${1:-build/switchyard}
switchyard_arg=()
if [[ -x "$binary" ]]; then
  switchyard_arg=(--switchyard "$binary")
else
  echo "check-deploy: $binary not built; the configs are checked without check-config" >&2
fi

# The chart renderer: Go's text/template with Sprig, as Helm renders (Helm is not in Debian 12).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Go's build cache where Go keeps it, or a temporary one (a cold build takes ~10 s).
gocache=$tmp/go-build
if [[ -n "${XDG_CACHE_HOME:-}" || -n "${HOME:-}" ]]; then gocache=$(go env GOCACHE); fi
GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE=$gocache \
  go build -o "$tmp/helm-render" deploy/tools/helm-render/main.go
"$python" deploy/tools/check_deploy.py "${switchyard_arg[@]}" --helm-render "$tmp/helm-render"
