#!/usr/bin/env bash
# Prints the Debian (or Ubuntu) packages that hold the shared libraries the given binaries link
# directly (their DT_NEEDED entries), one a line, sorted: what a runtime image must install to
# run them. The Dockerfiles' build stages call it on the freshly built binaries, and
# scripts/check-deploy.sh calls it on build/switchyard, so a new library dependency reaches the
# images without anyone editing a package list.
#   deploy/docker/runtime-packages.sh build/switchyard build/switchyard-cli
#   deploy/docker/runtime-packages.sh --provided '^libcuda' build/switchyard
# --provided REGEX leaves out the libraries whose names match it: those the base image or the
# host supplies (the CUDA runtime of an nvidia/cuda image, the driver's libcuda).
set -euo pipefail

provided=
if [[ "${1:-}" == --provided ]]; then
  provided=${2:?--provided needs a regular expression}
  shift 2
fi
if (($# == 0)); then
  echo "usage: $0 [--provided REGEX] BINARY..." >&2
  exit 2
fi
for tool in objdump ldd dpkg-query; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "runtime-packages.sh: '$tool' not found (binutils, libc-bin and dpkg provide them)" >&2
    exit 1
  fi
done

# Every directly needed library as "binary library resolved-path" (path "-" when the loader
# does not find it here).
needed=()
for bin in "$@"; do
  if [[ ! -x "$bin" || -d "$bin" ]]; then
    echo "runtime-packages.sh: '$bin' is not an executable file" >&2
    exit 1
  fi
  declare -A resolved=()
  while read -r name _ path _; do
    if [[ "$path" == /* ]]; then resolved[$name]=$path; fi
  done < <(ldd "$bin")
  while read -r lib; do
    if [[ -n "$provided" && "$lib" =~ $provided ]]; then continue; fi
    needed+=("$bin $lib ${resolved[$lib]:--}")
  done < <(objdump -p "$bin" | awk '$1 == "NEEDED" { print $2 }')
  unset resolved
done

# dpkg records a file under the path its package ships it at, which after the /usr merge may
# differ from the path the loader reports (/lib/x86_64-linux-gnu/... for /usr/lib/...): ask
# for both spellings at once (one dpkg-query, which reads every file list) and keep the hits.
candidates=()
for entry in "${needed[@]}"; do
  path=${entry##* }
  [[ "$path" == - ]] && continue
  candidates+=("$path")
  if [[ "$path" == /usr/* ]]; then candidates+=("${path#/usr}"); else candidates+=("/usr$path"); fi
done
declare -A owner=()
while IFS= read -r line; do
  # "libfoo1:amd64: /usr/lib/x86_64-linux-gnu/libfoo.so.1"; diversion lines name no package.
  [[ "$line" == diversion* ]] && continue
  pkg=${line%%: /*}
  owner[/${line#*: /}]=${pkg%%:*}
done < <(dpkg-query -S "${candidates[@]}" 2>/dev/null || true)

status=0
packages=()
for entry in "${needed[@]}"; do
  read -r bin lib path <<<"$entry"
  if [[ "$path" == - ]]; then
    echo "runtime-packages.sh: $bin needs $lib, which the loader does not find here" >&2
    status=1
    continue
  fi
  if [[ "$path" == /usr/* ]]; then alt=${path#/usr}; else alt=/usr$path; fi
  pkg=${owner[$path]:-${owner[$alt]:-}}
  if [[ -z "$pkg" ]]; then
    echo "runtime-packages.sh: no installed package owns $path (needed by $bin)" >&2
    status=1
    continue
  fi
  packages+=("$pkg")
done
if ((${#packages[@]})); then printf '%s\n' "${packages[@]}" | sort -u; fi
exit "$status"
