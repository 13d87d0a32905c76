#!/usr/bin/env bash
# Failover to a spare chip end to end (issue #8, "Failures"): worker processes over ipc on a
# rack, a fault injected (SIGKILL, SIGSTOP, two failures, a kill from outside), and every time
# the same tokens and the same logits (`cmp`) as the fault-free run; with every spare used, a
# clean stop naming the chip, the tokens so far, exit 1. Never a process or socket left behind.
set -euo pipefail
LOCKSTEP=${1:?usage: failover_test.sh path/to/lockstep}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
private_tmp failover
no_leftovers() { no_run_leftovers "$1"; }

cat >m.json <<'JSON'
{"_name_or_path": "failover-m", "model_type": "llama", "hidden_size": 128, "head_dim": 32,
 "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 8,
 "num_key_value_heads": 4, "vocab_size": 128, "max_position_embeddings": 256}
JSON
printf '5,6,7\n9,8\n' >prompts.txt
# Two sequences in flight, sampled with temperature: the draws must continue identically.
BASE=(run --model m.json --seed 3 --prompts prompts.txt --temperature 0.8 --sample-seed 11
      --transport ipc --topology rack --tp 2 --pp 2 --slots 2 --heartbeat-timeout-ms 1000 --json
      --barrier)  # failover runs on the per-step barrier path (not yet self-clocked)
RUN=(--log-level warn "${BASE[@]}" --max-new 10)
expect_exit 0 "$LOCKSTEP" "${RUN[@]}" --dump-logits ref.npy
ref=$(json "[r['tokens'] for r in d['requests']]")
[ "$(json "d['failovers']")" = "[]" ] || fail "fault-free run reports failovers"
no_leftovers "fault-free"

same() {  # same NAME FAILOVERS: tokens and logits equal the fault-free run's
  [ "$(json "[r['tokens'] for r in d['requests']]")" = "$ref" ] \
    || fail "$1: tokens $(json "[r['tokens'] for r in d['requests']]") != $ref"
  cmp -s ref.0.npy "$1.0.npy" && cmp -s ref.1.npy "$1.1.npy" || fail "$1: logits differ"
  [ "$(json "len(d['failovers'])")" = "$2" ] || fail "$1: want $2 failover(s): $(json "d['failovers']")"
  [ "$(json "d['partial']")" = False ] || fail "$1: partial"
  no_leftovers "$1"
}

# SIGKILL as step 4 starts (decode): detected at once, chip 1's (stage 0, rank 1) spare found.
expect_exit 0 "$LOCKSTEP" "${RUN[@]}" --inject kill:1@4 --dump-logits kill.npy
same kill 1
[ "$(json "d['failovers'][0]['chip']")" = 1 ] || fail "kill: failed chip $(json "d['failovers']")"
[ "$(json "d['failovers'][0]['spare'] >= 64")" = True ] || fail "kill: spare $(json "d['failovers']")"
[ "$(json "'signal 9' in d['failovers'][0]['cause']")" = True ] || fail "kill: cause"
grep -q "failover: chip 1 -> spare chip" err.txt || fail "kill: no failover line: $(cat err.txt)"

# SIGSTOP of the sampling chip: found silent by heartbeat, SIGKILLed, replaced.
expect_exit 0 "$LOCKSTEP" "${RUN[@]}" --inject stop:2@3 --dump-logits stop.npy
same stop 1
[ "$(json "'stopped answering' in d['failovers'][0]['cause']")" = True ] || fail "stop: cause $(json "d['failovers']")"
[ "$(json "d['failovers'][0]['detect_ms'] >= 900")" = True ] || fail "stop: detected before the heartbeat timeout"

# Two failures, the second after the first failover (a prefill-time kill and a decode kill).
expect_exit 0 "$LOCKSTEP" "${RUN[@]}" --inject kill:0@0 --inject kill:3@6 --dump-logits two.npy
same two 2

# A kill from outside while it generates: the test finds the worker of chip 3 and kill -9s it
# once the first decode tokens are out (debug log), with ~200 steps still to go: on an idle
# machine a short run finished before a kill timed by sleeping.
set +e
timeout 120 "$LOCKSTEP" --log-level debug "${BASE[@]}" --max-new 200 --dump-logits long.npy \
  >out.txt 2>err.txt &
run=$!
victim=""
for _ in $(seq 1 1000); do
  # Only a worker of this script's run (tagged with its run directory under our TMPDIR).
  victim=$(pgrep -f "lockstep-worker .*--tag $TMPDIR/lockstep-run-[^ ]* --chip 3 " | head -1)
  [ -n "$victim" ] && grep -q "request [0-9]* token 2:" err.txt 2>/dev/null && break
  sleep 0.01
done
[ -n "$victim" ] && kill -9 "$victim"
wait $run; got=$?
set -e
[ -n "$victim" ] || fail "outside kill: no worker for chip 3"
[ "$got" = 0 ] || { cat err.txt >&2; fail "outside kill: exited $got"; }
[ "$(json "len(d['failovers'])")" = 1 ] || fail "outside kill: $(json "d['failovers']")"
cp out.txt outside.json
expect_exit 0 "$LOCKSTEP" --log-level warn "${BASE[@]}" --max-new 200 --dump-logits long_ref.npy
[ "$(python3 -c "import json; print([r['tokens'] for r in json.load(open('outside.json'))['requests']])")" = \
  "$(json "[r['tokens'] for r in d['requests']]")" ] || fail "outside kill: tokens differ"
cmp -s long.0.npy long_ref.0.npy && cmp -s long.1.npy long_ref.1.npy || fail "outside kill: logits differ"
no_leftovers "outside kill"

# Every spare used: a rack of 3 nodes x 2 chips with one spare node (2 spares) and a plan on
# all 4 working chips. The third failure has no spare: a clean stop naming the chip, the tokens
# produced so far (partial), exit 1.
expect_exit 0 "$LOCKSTEP" topo generate --preset rack --chips-per-node 2 --nodes 3 --spare-nodes 1 -o small.yaml
SMALL=(--log-level warn run --model m.json --seed 3 --prompt 5,6,7 --max-new 10 --transport ipc
       --topology small.yaml --tp 2 --pp 2 --heartbeat-timeout-ms 1000 --json --barrier)
expect_exit 1 "$LOCKSTEP" "${SMALL[@]}" --inject kill:0@2 --inject kill:1@4 --inject kill:2@6
grep -q "no spare chip left to replace chip 2" err.txt || fail "no spare: $(cat err.txt)"
[ "$(grep -c "error" err.txt)" = 1 ] || fail "no spare: want one error line: $(cat err.txt)"
tail -1 err.txt | grep -q "^lockstep: error: chip 2 .*no spare chip left" || fail "no spare: last line $(tail -1 err.txt)"
[ "$(json "d['partial']")" = True ] || fail "no spare: not partial"
[ "$(json "len(d['failovers'])")" = 3 ] || fail "no spare: $(json "d['failovers']")"
[ "$(json "d['failovers'][2]['spare']")" = -1 ] || fail "no spare: $(json "d['failovers']")"
partial=$(json "d['tokens']")
expect_exit 0 "$LOCKSTEP" "${SMALL[@]}"
[ "$(json "d['tokens'][:len($partial)] == $partial and 0 < len($partial) < 10")" = True ] \
  || fail "no spare: partial tokens $partial are not the a prefix of $(json "d['tokens']")"
no_leftovers "no spare"
echo "failover tests passed"
