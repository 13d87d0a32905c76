#!/usr/bin/env bash
# The distributed runtime end to end (issue #7): `lockstep run --transport T` against the
# single-process reference, bit for bit (tokens and `cmp` of the logits), over several plans and
# transports; many concurrent requests; bad inputs that stop before anything starts; a killed
# worker; and no process or socket file left behind after any of it.
set -euo pipefail
LOCKSTEP=${1:?usage: runtime_test.sh path/to/lockstep}
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_exit() {  # expect_exit CODE cmd...
  local want=$1; shift
  set +e; timeout "${LIMIT:-60}" "$@" >out.txt 2>err.txt; local got=$?; set -e
  [ "$got" = "$want" ] || { cat out.txt err.txt >&2; fail "'$*' exited $got, want $want"; }
}
json() { python3 -c "import json,sys; d=json.load(open('out.txt')); print($1)"; }
# Everything a run leaves: worker processes and run directories started after this point.
before_dirs=$(ls -d /tmp/lockstep-run-* 2>/dev/null | sort || true)
no_leftovers() {  # no_leftovers WHAT
  local dirs
  dirs=$(comm -13 <(echo "$before_dirs") <(ls -d /tmp/lockstep-run-* 2>/dev/null | sort || true))
  [ -z "$dirs" ] || fail "$1: run directories left behind: $dirs"
  if pgrep -f "lockstep-worker --coordinator .*lockstep-run" -P $$ >/dev/null; then
    fail "$1: worker processes left behind"
  fi
  for d in $(pgrep -f "lockstep-worker" || true); do
    # A worker whose parent is gone would be re-parented; ours are tagged with a run directory
    # that must not exist any more.
    tag=$(tr '\0' ' ' </proc/$d/cmdline 2>/dev/null | sed -n 's/.*--tag \([^ ]*\).*/\1/p')
    case "$tag" in /tmp/lockstep-run-*) [ -d "$tag" ] || fail "$1: orphan worker $d ($tag)";; esac
  done
}

cat >gqa.json <<'JSON'
{"_name_or_path": "gqa-rt", "model_type": "llama", "hidden_size": 128, "head_dim": 32,
 "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 16,
 "num_key_value_heads": 8, "vocab_size": 300, "max_position_embeddings": 64}
JSON
M=gqa.json
expect_exit 0 "$LOCKSTEP" run --model $M --seed 9 --prompt 5,6,7 --max-new 6 --dump-logits ref.npy --json
ref_tokens=$(json "d['tokens']")

# Bit-identity over transports and plans.
check() {  # check NAME ARGS...: tokens and logits equal the reference
  local name=$1; shift
  expect_exit 0 "$LOCKSTEP" --log-level warn run --model $M --seed 9 --prompt 5,6,7 --max-new 6 \
    --dump-logits "$name.npy" --json "$@"
  [ "$(json "d['tokens']")" = "$ref_tokens" ] || fail "$name: tokens $(json "d['tokens']") != $ref_tokens"
  cmp -s ref.npy "$name.npy" || fail "$name: logits differ from the reference"
  [ "$(json "d['predicted_token_latency_ns'] > 0 and d['measured_token_latency_ns'] > 0 and d['tokens_per_s'] > 0")" = True ] \
    || fail "$name: latency figures $(cat out.txt)"
  no_leftovers "$name"
}

check tcp_tp2 --transport tcp --tp 2 --pp 1
[ "$(json "d['chips']")" = 2 ] || fail "tcp_tp2 runs on 2 chips"
check ipc_tp4 --transport ipc --tp 4 --pp 1
check ipc_pp2 --transport ipc --tp 1 --pp 2
[ "$(json "len(d['stages'])")" = 2 ] || fail "ipc_pp2 has 2 stages"
check ipc_pp2_tp2 --transport ipc --tp 2 --pp 2
# Regression: a worker ready before the last shard left was once not counted (chip 0 never
# "ready"); 4 chips make that likely.
check tcp_pp2_tp2 --transport tcp --tp 2 --pp 2
check inproc_tp2 --transport inproc --tp 2 --pp 2
check sim_tp2 --transport sim --tp 2 --pp 1

# A whole rack: 8 stages x TP 8 on all 64 working chips, one lockstep-worker process each.
# Not in the sanitizer build: there, 64 sanitized processes on 2 cores once saw a worker told to
# shut down before it registered (under investigation, issue #7); the 64-chip plan still runs
# under the sanitizers in worker_test (threads over inproc).
R="$(dirname "$0")/../examples/models/rack-demo"
if [ "${LOCKSTEP_SANITIZED:-0}" != 1 ]; then
expect_exit 0 "$LOCKSTEP" run --model "$R" --seed 5 --prompt 1,2,3 --max-new 4 --dump-logits rack_ref.npy
# 64 processes start one after another (slowly under a sanitizer): a longer limit.
LIMIT=240 expect_exit 0 "$LOCKSTEP" --log-level warn run --model "$R" --seed 5 --prompt 1,2,3 --max-new 4 \
  --transport ipc --topology rack --tp 8 --pp 8 --dump-logits rack_ipc.npy --json
[ "$(json "d['chips']")" = 64 ] || fail "rack run uses 64 chips: $(cat out.txt)"
cmp -s rack_ref.npy rack_ipc.npy || fail "64-process rack run: logits differ from the reference"
no_leftovers "rack_64"
fi

# Many concurrent requests (more than the pipeline's slots): each equals running it alone.
printf '5,6,7\n1\n9,8,7,6,5\n2,2\n100,3\n7\n' >prompts.txt
expect_exit 0 "$LOCKSTEP" --log-level warn run --model $M --seed 9 --prompts prompts.txt --max-new 5 \
  --transport ipc --tp 2 --pp 2 --slots 2 --dump-logits many.npy --json
[ "$(json "len(d['requests'])")" = 6 ] || fail "6 requests answered"
i=0
while read -r p; do
  expect_exit 0 "$LOCKSTEP" --log-level warn run --model $M --seed 9 --prompt "$p" --max-new 5 --dump-logits alone.npy
  cmp -s alone.npy "many.$i.npy" || fail "request $i ($p) differs from running it alone"
  i=$((i + 1))
done <prompts.txt
no_leftovers "many requests"

# Bad inputs stop before anything starts.
"$LOCKSTEP" weights generate --model "$(dirname "$0")/../examples/models/tiny-llama" --seed 1 -o tiny.safetensors >/dev/null 2>&1
expect_exit 1 "$LOCKSTEP" run --model $M --weights tiny.safetensors --prompt 1 --transport ipc
grep -q "tensor\|shape" err.txt || fail "mismatched weights: $(cat err.txt)"
grep -q "started" err.txt && fail "mismatched weights started workers"
expect_exit 0 "$LOCKSTEP" plan --model $M --topology rack -o rack.plan
expect_exit 1 "$LOCKSTEP" run --model $M --seed 9 --prompt 1 --transport ipc --topology node --plan rack.plan
grep -q "topology 'rack'" err.txt || fail "plan for another topology: $(cat err.txt)"
grep -q "started" err.txt && fail "foreign plan started workers"
expect_exit 2 "$LOCKSTEP" run --model $M --seed 9 --prompt 1 --transport carrier-pigeon
no_leftovers "bad inputs"

# A worker pointed at a wrong coordinator address gives up with one clear line.
WORKER=$(dirname "$LOCKSTEP")/lockstep-worker
expect_exit 1 "$WORKER" --coordinator ipc:///tmp/lockstep-no-such-coordinator --connect-timeout-ms 300
grep -q "no coordinator answered at ipc:///tmp/lockstep-no-such-coordinator" err.txt || fail "wrong address: $(cat err.txt)"
expect_exit 2 "$WORKER"
expect_exit 0 "$WORKER" --help

# The daemons by hand: lockstep-coordinator waits for workers started separately.
COORD=$(dirname "$LOCKSTEP")/lockstep-coordinator
expect_exit 0 "$COORD" --help
ctl=ipc:///tmp/lockstep-rt-$$-control
timeout 60 "$COORD" --listen $ctl --model $M --seed 9 --prompt 5,6,7 --max-new 6 --tp 2 \
  --transport ipc --json >coord.json 2>coord.err &
coord=$!
timeout 60 "$WORKER" --coordinator $ctl --quiet & w1=$!
timeout 60 "$WORKER" --coordinator $ctl --quiet & w2=$!
wait $coord || { cat coord.err >&2; fail "lockstep-coordinator failed"; }
wait $w1 || fail "worker 1 did not exit cleanly after the coordinator's shutdown"
wait $w2 || fail "worker 2 did not exit cleanly after the coordinator's shutdown"
[ "$(python3 -c "import json; print(json.load(open('coord.json'))['requests'][0]['tokens'])")" = "$ref_tokens" ] \
  || fail "lockstep-coordinator tokens: $(cat coord.json)"
rm -f /tmp/lockstep-rt-$$-control

# Kill one worker mid-run: the run fails naming its chip; nothing is left behind.
seq 1 12 | sed 's/$/,3,4/' >long.txt
set +e
timeout 60 "$LOCKSTEP" run --model $M --seed 9 --prompts long.txt --max-new 50 --transport ipc \
  --tp 2 --pp 2 --slots 2 >out.txt 2>err.txt &
run=$!
for _ in $(seq 1 200); do
  grep -q "workers ready" err.txt && break
  sleep 0.05
done
victim=$(pgrep -f "lockstep-worker .*--chip 1 " | head -1)
[ -n "$victim" ] && kill -9 "$victim"
wait $run; got=$?
set -e
[ -n "$victim" ] || fail "no worker for chip 1 to kill: $(cat err.txt)"
[ "$got" = 1 ] || { cat err.txt >&2; fail "killed worker: run exited $got, want 1"; }
grep -q "error: chip 1 (worker pid $victim.*killed by signal 9" err.txt || fail "killed worker not named: $(cat err.txt)"
no_leftovers "killed worker"
echo "runtime tests passed"
