#!/usr/bin/env bash
# Installs everything Switchyard needs to build, test and benchmark on Debian 12.
# Idempotent: packages already present are left alone. Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libboost-dev nlohmann-json3-dev libcurl4-openssl-dev libssl-dev libyaml-cpp-dev
  prometheus-cpp-dev libsqlite3-dev sqlite3 libgtest-dev libgmock-dev
  libpqxx-dev postgresql-15  # the PostgreSQL ledger; its tests start a private server
  python3 python3-numpy wrk curl chromium openssl
  clang libclang-rt-14-dev llvm-14  # scripts/fuzz.sh: libFuzzer, ASan/UBSan runtimes, symbolizer
  # scripts/check-deploy.sh: promtool, haproxy -c, docker-compose config (no daemon), Go and
  # Sprig to render the Helm chart, PyYAML
  prometheus haproxy docker-compose golang-go golang-github-masterminds-sprig-dev
  golang-gopkg-yaml.v2-dev python3-yaml
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

# Node.js may come from another source that bundles npm; Debian's packages only when absent.
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi

if ((${#missing[@]})); then
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
