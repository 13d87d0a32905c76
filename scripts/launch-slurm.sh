#!/usr/bin/env bash
#SBATCH --job-name=lockstep
#SBATCH --output=lockstep-%j.out
# Runs one Lockstep generation as a Slurm job: one lockstep-worker per task (srun), the
# coordinator on the first node of the allocation (where this batch script runs), its address
# handed to every worker. Ask for as many tasks as the plan uses chips.
#
#   sbatch -N NODES -n CHIPS scripts/launch-slurm.sh [OPTIONS] -- COORDINATOR-ARGS...
#
# OPTIONS
#   --bin DIR          where lockstep-coordinator and lockstep-worker are (default: $LOCKSTEP_BIN,
#                      else PATH)
#   --port N           the coordinator's control port on the first node (default 7700)
#   --tcp-base-port N  link ports: N + chip * 16 + port on each chip's host (default 27000)
#   --chips LIST       the chips the tasks serve, task i -> i-th entry (default 0..CHIPS-1)
#   --curve DIR        CURVE keys for the links (DIR/lockstep.public, DIR/lockstep.secret, from
#                      `lockstep keys generate -o DIR`; DIR must be readable on every node)
#   --out FILE         the coordinator's result (default: stdout of the job)
#   -h, --help         this text
# COORDINATOR-ARGS are lockstep-coordinator's (--model, --seed/--weights, --prompt, --tp, --pp,
# --json, ...); --listen, --transport, --tcp-host and --tcp-base-port are set by this script.
#
# Example (2 nodes, a plan of 2 chips, one worker per node):
#   sbatch --wait -N 2 -n 2 --ntasks-per-node=1 scripts/launch-slurm.sh --bin build/bin -- \
#     --model examples/tiny/config.json --seed 9 --prompt 5,6,7 --max-new 6 --tp 2 --pp 1 --json
# Exit status: the coordinator's (0 ok, 1 runtime failure, 2 usage error); 2 for a bad option.
set -euo pipefail

usage() { sed -n '4,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "launch-slurm.sh: $*" >&2; exit 2; }

bin=${LOCKSTEP_BIN:-}
port=7700
base_port=27000
chips=""
curve=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=${2:?--bin needs DIR}; shift ;;
    --port) port=${2:?--port needs N}; shift ;;
    --tcp-base-port) base_port=${2:?--tcp-base-port needs N}; shift ;;
    --chips) chips=${2:?--chips needs LIST}; shift ;;
    --curve) curve=${2:?--curve needs DIR}; shift ;;
    --out) out=${2:?--out needs FILE}; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done
[ -n "${SLURM_JOB_ID:-}" ] || die "not inside a Slurm job: submit with sbatch -n CHIPS $0 ... (see --help)"
ntasks=${SLURM_NTASKS:?SLURM_NTASKS is not set: submit with sbatch -n CHIPS}
coord=lockstep-coordinator
worker=lockstep-worker
if [ -n "$bin" ]; then coord=$bin/lockstep-coordinator; worker=$bin/lockstep-worker; fi
command -v "$coord" >/dev/null || die "$coord not found (give --bin DIR or set LOCKSTEP_BIN)"
command -v "$worker" >/dev/null || die "$worker not found (give --bin DIR or set LOCKSTEP_BIN)"
if [ -z "$chips" ]; then chips=$(seq -s, 0 $((ntasks - 1))); fi
IFS=, read -r -a chip_list <<<"$chips"
[ "${#chip_list[@]}" = "$ntasks" ] || die "--chips names ${#chip_list[@]} chips for $ntasks tasks"

# Where each task runs: one srun step with the same geometry as the workers' reports its IP.
first_ip() { hostname -I 2>/dev/null | awk '{print $1}'; }
coord_ip=$(first_ip)
[ -n "$coord_ip" ] || coord_ip=127.0.0.1
tcp_hosts=()
while read -r task ip; do
  [ -n "$ip" ] || ip=127.0.0.1
  tcp_hosts+=(--tcp-host "${chip_list[$task]}=$ip")
done < <(srun --ntasks="$ntasks" bash -c \
  'echo "$SLURM_PROCID $(hostname -I 2>/dev/null | awk "{print \$1}")"' | sort -n)
[ "${#tcp_hosts[@]}" = $((2 * ntasks)) ] || die "could not learn the hosts of $ntasks tasks"

curve_args=()
worker_curve=""
if [ -n "$curve" ]; then
  curve_args=(--curve "$curve")
  worker_curve="--curve $curve"
fi
coord_pid=""
cleanup() { [ -z "$coord_pid" ] || kill "$coord_pid" 2>/dev/null || true; }
trap cleanup EXIT
if [ -n "$out" ]; then exec 3>"$out"; else exec 3>&1; fi
"$coord" --listen "tcp://0.0.0.0:$port" --transport tcp --tcp-base-port "$base_port" \
  "${tcp_hosts[@]}" "${curve_args[@]}" "$@" >&3 &
coord_pid=$!
# Each task asks for its chip; the coordinator refuses a chip the plan does not use.
export LOCKSTEP_CHIPS=$chips LOCKSTEP_WORKER=$worker LOCKSTEP_COORD="tcp://$coord_ip:$port"
export LOCKSTEP_WORKER_CURVE=$worker_curve
set +e
srun --ntasks="$ntasks" --kill-on-bad-exit=1 bash -c \
  'IFS=, read -r -a c <<<"$LOCKSTEP_CHIPS"; exec "$LOCKSTEP_WORKER" --coordinator "$LOCKSTEP_COORD" --chip "${c[$SLURM_PROCID]}" --quiet --tag "slurm-$SLURM_JOB_ID" $LOCKSTEP_WORKER_CURVE'
workers_rc=$?
wait "$coord_pid"
rc=$?
coord_pid=""
set -e
if [ "$rc" = 0 ] && [ "$workers_rc" != 0 ]; then
  echo "launch-slurm.sh: workers exited $workers_rc" >&2
  rc=1
fi
exit "$rc"
