#!/usr/bin/env bash
# launch-local.sh: a distributed run with every worker on this host. Starts lockstep-coordinator
# (which plans, or reads --plan) on an ipc control socket in a work folder of its own, reads how
# many workers it waits for, starts that many lockstep-worker processes, waits, prints the
# tokens (one line per prompt) and removes everything it started on exit, INT or TERM.
set -uo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/launch-local.sh [--bin DIR] [--keep-logs] COORDINATOR-OPTIONS...

Runs lockstep-coordinator and one lockstep-worker per chip of its plan on this host, prints the
tokens (one line per prompt), and stops every process it started (also on Ctrl-C / TERM).

  --bin DIR      folder holding lockstep-coordinator and lockstep-worker
                 (default: $LOCKSTEP_BIN, else build/cli next to this script)
  --keep-logs    keep the work folder (coordinator and worker logs) and print its path
  -h, --help     this help

COORDINATOR-OPTIONS go to lockstep-coordinator (see lockstep-coordinator --help), e.g.
  --model examples/models/tiny-llama --seed 1 --prompt 1,2,3 --max-new 8 --tp 2 --pp 2
Without --transport the links use ipc sockets in the work folder; --listen is set by the script.

example:
  scripts/launch-local.sh --model examples/models/tiny-llama --seed 1 --prompt 1,2,3 \
      --max-new 8 --pp 2
USAGE
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${LOCKSTEP_BIN:-$here/../build/cli}
keep=0
args=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --bin) [[ $# -ge 2 ]] || { echo "launch-local.sh: --bin needs a folder" >&2; exit 2; }
           bin=$2; shift 2 ;;
    --keep-logs) keep=1; shift ;;
    --listen|--listen=*) echo "launch-local.sh: --listen is set by the script" >&2; exit 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ ${#args[@]} -gt 0 ]] || { usage >&2; exit 2; }
for exe in lockstep-coordinator lockstep-worker; do
  [[ -x $bin/$exe ]] || { echo "launch-local.sh: $bin/$exe not found (build it, or --bin DIR)" >&2; exit 2; }
done
has_transport=0
for a in "${args[@]}"; do [[ $a == --transport* ]] && has_transport=1; done

work=$(mktemp -d /tmp/lockstep-local-XXXXXX)
coordinator=""
workers=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${workers[@]}" $coordinator; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${workers[@]}" $coordinator; do
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [[ $keep == 1 ]]; then echo "launch-local.sh: logs in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

control="ipc://$work/control"
extra=()
[[ $has_transport == 1 ]] || extra=(--transport ipc --ipc-dir "$work")
"$bin/lockstep-coordinator" --listen "$control" "${extra[@]}" "${args[@]}" \
  >"$work/tokens" 2>"$work/coordinator.log" &
coordinator=$!

# The coordinator says how many workers it waits for once it has planned and cut the shards.
n=""
for _ in $(seq 1 1200); do
  n=$(sed -n 's/.*waiting for \([0-9][0-9]*\) workers.*/\1/p' "$work/coordinator.log" | head -1)
  [[ -n $n ]] && break
  kill -0 "$coordinator" 2>/dev/null || break
  sleep 0.05
done
if [[ -z $n ]]; then
  wait "$coordinator"; status=$?
  cat "$work/coordinator.log" >&2
  echo "launch-local.sh: the coordinator stopped before waiting for workers (status $status)" >&2
  exit $(( status == 0 ? 1 : status ))
fi
echo "launch-local.sh: starting $n workers for $control" >&2
for i in $(seq 0 $((n - 1))); do
  "$bin/lockstep-worker" --coordinator "$control" --tag "launch-local worker $i" \
    >/dev/null 2>"$work/worker-$i.log" &
  workers+=($!)
done
wait "$coordinator"; status=$?
coordinator=""
if [[ $status -ne 0 ]]; then
  grep -v '^lockstep-coordinator: \(waiting\|workers\|shipping\)' "$work/coordinator.log" >&2
  echo "launch-local.sh: lockstep-coordinator failed (status $status)" >&2
  exit "$status"
fi
cat "$work/tokens"
# The coordinator told every worker to exit; give them a moment before cleanup kills stragglers.
for pid in "${workers[@]}"; do
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done
exit 0
