# Shared by the bench scripts (source it after `cd` to the repository root):
#   require_bins BUILD NAME...   exits 2 naming a missing binary and how to build it
#   bench_tmp                    makes $tmp and $pids; every pid in $pids is stopped and $tmp
#                                removed when the script exits
#   port_of FILE                 waits (bounded) until FILE holds "port":N and prints N

require_bins() {
  local build=$1 bin
  shift
  for bin in "$@"; do
    if [[ ! -x "$build/$bin" ]]; then
      echo "missing $build/$bin: build it with cmake --build $build --target $bin" >&2
      exit 2
    fi
  done
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}

bench_tmp() {
  tmp=$(mktemp -d)
  pids=()
  trap bench_cleanup EXIT
}

port_of() {
  for _ in $(seq 100); do
    if grep -q '"port":' "$1" 2>/dev/null; then
      grep -m1 -o '"port":[0-9]*' "$1" | cut -d: -f2
      return 0
    fi
    sleep 0.1
  done
  echo "no port in $1: $(cat "$1" "${1%.out}.err" 2>/dev/null)" >&2
  return 1
}
