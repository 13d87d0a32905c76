#!/usr/bin/env bash
# scripts/launch-slurm.sh for real (issue #8): starts a one-host Slurm cluster in a temporary
# folder (munged with its own key and socket, slurmctld and slurmd with a generated slurm.conf on
# ports no other test uses), runs a generation through sbatch/srun (one worker per task, the
# coordinator on the first node, CURVE on the links) and checks its tokens against the
# in-process run. Every daemon it started is stopped and the folder removed, whatever happens.
# Needs root (CI runs as root): skips otherwise.
#
#   tests/slurm_test.sh LOCKSTEP LOCKSTEP-COORDINATOR LOCKSTEP-WORKER   (paths to the binaries)
set -euo pipefail
LOCKSTEP=$(realpath "${1:?usage: slurm_test.sh LOCKSTEP COORDINATOR WORKER}")
SRC=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then echo "SKIP: needs root (starts munged, slurmctld and slurmd)"; exit 0; fi
for t in munged slurmctld slurmd sbatch srun; do
  command -v $t >/dev/null || { echo "SKIP: $t not installed (apt-get install slurm-wlm munge)"; exit 0; }
done
COORD=$(realpath "${2:?usage: slurm_test.sh LOCKSTEP COORDINATOR WORKER}")
WORKER=$(realpath "${3:?usage: slurm_test.sh LOCKSTEP COORDINATOR WORKER}")
BIN=$(mktemp -d /tmp/lockstep-slurm-bin.XXXXXX)
ln -s "$COORD" "$BIN/lockstep-coordinator"
ln -s "$WORKER" "$BIN/lockstep-worker"

# Ports of this test only (other tests use 7700, 27000+ and 29000+).
CTLD_PORT=31817
SLURMD_PORT=31818
CONTROL_PORT=31700
LINK_BASE=31000
DIR=$(mktemp -d /tmp/lockstep-slurm.XXXXXX)
cleanup() {
  set +e
  for p in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null
  done
  # Wait for them (and any job step) to go, so the ports are free for the next run.
  for _ in $(seq 50); do
    alive=0
    for p in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
      [ -f "$p" ] && kill -0 "$(cat "$p")" 2>/dev/null && alive=1
    done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
    [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null
  done
  for w in $(pgrep -f "lockstep-worker.*--tag slurm-" || true); do kill -9 "$w" 2>/dev/null; done
  rm -rf "$DIR" "$BIN"
}
trap cleanup EXIT
show_logs() { tail -n 20 "$DIR"/log/*.log "$DIR"/job.* 2>/dev/null >&2 || true; }

mkdir -p "$DIR"/{state,spool,log,munge,job}
chmod 700 "$DIR/munge"
dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$DIR/munge/munge.key"
timeout 10 munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
  --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
  --seed-file="$DIR/munge/seed" --force || { show_logs; fail "munged did not start"; }
host=$(hostname -s)
cat >"$DIR/slurm.conf" <<CONF
ClusterName=lockstep
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/linear
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=$host CPUs=128 State=UNKNOWN
PartitionName=lockstep Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF=$DIR/slurm.conf
timeout 10 slurmctld -f "$SLURM_CONF" || { show_logs; fail "slurmctld did not start"; }
timeout 10 slurmd -f "$SLURM_CONF" || { show_logs; fail "slurmd did not start"; }
for _ in $(seq 100); do
  sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed)' && break
  sleep 0.1
done
sinfo -h -o %T | grep -qE '^(idle|mixed)' || { show_logs; fail "the node never became idle: $(sinfo 2>&1)"; }

cd "$DIR/job"
cat >model.json <<'JSON'
{"_name_or_path": "slurm-rt", "model_type": "llama", "hidden_size": 128, "head_dim": 32,
 "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 16,
 "num_key_value_heads": 8, "vocab_size": 300, "max_position_embeddings": 64}
JSON
args=(--model "$DIR/job/model.json" --seed 9 --prompt 5,6,7 --max-new 6)
timeout 60 "$LOCKSTEP" --log-level warn run "${args[@]}" --json >ref.json
want=$(python3 -c "import json; print(json.load(open('ref.json'))['tokens'])")

"$LOCKSTEP" keys generate -o "$DIR/job/keys" >/dev/null  # the links use CURVE

# --help and a job-less call.
"$SRC/scripts/launch-slurm.sh" --help | grep -q "sbatch -N NODES -n CHIPS" || fail "--help"
set +e
"$SRC/scripts/launch-slurm.sh" -- --model x >/dev/null 2>err.txt
rc=$?
set -e
[ $rc = 2 ] && grep -q "not inside a Slurm job" err.txt || fail "outside a job: exit $rc $(cat err.txt)"

set +e
timeout 60 sbatch --wait --quiet -N 1 -n 2 -o "$DIR/job.out" -e "$DIR/job.err" \
  "$SRC/scripts/launch-slurm.sh" --bin "$BIN" --port $CONTROL_PORT --tcp-base-port $LINK_BASE \
  --curve "$DIR/job/keys" --out "$DIR/job/result.json" -- "${args[@]}" --tp 2 --pp 1 --json
rc=$?
set -e
[ $rc = 0 ] || { show_logs; fail "sbatch --wait exited $rc"; }
got=$(python3 -c "import json; print(json.load(open('result.json'))['requests'][0]['tokens'])")
[ "$got" = "$want" ] || fail "tokens through Slurm $got != in-process $want"
chips=$(python3 -c "import json; print(json.load(open('result.json'))['chips'])")
[ "$chips" = 2 ] || fail "the job ran $chips chips, want 2"
echo "PASS: sbatch/srun generation on a one-host Slurm cluster: tokens $got equal the in-process run"
