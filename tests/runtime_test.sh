#!/usr/bin/env bash
# The distributed runtime end to end (issue #7): `lockstep run --transport T` against the
# single-process reference, bit for bit (tokens and `cmp` of the logits), over several plans and
# transports; many concurrent requests; bad inputs that stop before anything starts; a killed
# worker; and no process or socket file left behind after any of it.
set -euo pipefail
LOCKSTEP=${1:?usage: runtime_test.sh path/to/lockstep}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
private_tmp runtime
no_leftovers() {  # no_leftovers WHAT
  no_run_leftovers "$1"
  if pgrep -f "lockstep-worker --coordinator .*lockstep-run" -P $$ >/dev/null; then
    fail "$1: worker processes left behind"
  fi
}

cat >gqa.json <<'JSON'
{"_name_or_path": "gqa-rt", "model_type": "llama", "hidden_size": 128, "head_dim": 32,
 "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 16,
 "num_key_value_heads": 8, "vocab_size": 300, "max_position_embeddings": 64}
JSON
M=gqa.json
expect_exit 0 "$LOCKSTEP" run --model $M --seed 9 --prompt 5,6,7 --max-new 6 --dump-logits ref.npy --json
ref_tokens=$(json "d['tokens']")
[ "$(json "d['measured_token_latency_ns'] > 0 and d['decode_tokens'] == 5 and abs(d['decode_tokens_per_s'] * d['measured_token_latency_ns'] / 1e9 - 1) < 0.01")" = True ] \
  || fail "the reference times its decode steps: $(cat out.txt)"

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

# The per-step barrier (--barrier; failover's path): every step a Step to every chip and back.
check tcp_tp2 --transport tcp --tp 2 --pp 1 --barrier
[ "$(json "d['chips']")" = 2 ] || fail "tcp_tp2 runs on 2 chips"
[ "$(json "d['self_clocked']")" = False ] || fail "tcp_tp2 --barrier: $(cat out.txt)"
# Where a step goes: compute measured on the workers (less than the whole step), and the
# schedule's chain of link hops: at TP 2 every all-reduce is one-shot (one hop): the embedding's,
# two per layer, then the head's gather and the sampled token to rank 1 of the stage.
[ "$(json "0 < d['measured_compute_ns_per_token'] < d['measured_token_latency_ns'] and d['critical_hops'] == 1 + 2 * 4 + 2 and d['control_hops'] == 2")" = True ] \
  || fail "tcp_tp2: step breakdown $(cat out.txt)"
# The mean chip's step by wall time: it computes, sends and waits on its peer (TP 2: every chip
# does all three), and the parts, with the control plane, make up the measured step.
[ "$(json "all(d['decode_breakdown_ns_per_token'][k] > 0 for k in ('compute', 'send', 'recv', 'control')) and d['decode_breakdown_ns_per_token']['forward'] == 0 and abs(sum(d['decode_breakdown_ns_per_token'].values()) - d['measured_token_latency_ns']) <= 10")" = True ] \
  || fail "tcp_tp2: where the decode step goes $(cat out.txt)"
# Workers on this host read their own shards (nothing shipped); every process's peak resident
# memory is reported, the coordinator's without the model's weights.
[ "$(json "d['shard_bytes'] == 0 and d['deploy_seconds'] > 0 and len(d['peak_rss_bytes']['workers']) == 2 and all(w['bytes'] > 0 for w in d['peak_rss_bytes']['workers']) and d['peak_rss_bytes']['coordinator'] > 0")" = True ] \
  || fail "tcp_tp2: shards read by the workers, peak memory reported $(cat out.txt)"
# Control-plane messages per generated token (issue #19 item 6), counted by the coordinator in
# the decode steps: with the per-step barrier every chip gets a Step and answers, 2 per chip
# for the one sequence's token (pings and heartbeats are liveness, not counted).
[ "$(json "d['control_messages_per_token'] == 2 * d['chips']")" = True ] \
  || fail "tcp_tp2: control messages per token $(cat out.txt)"
# Self-clocked, the default (issue #19 item 1): one start message, then the chips run on their
# own and the coordinator only receives the sampling chip's token stream — one message per token
# for one sequence, no control hop on the token path.
check tcp_tp2_clocked --transport tcp --tp 2 --pp 1
[ "$(json "d['self_clocked'] and not d['virtual_time'] and d['pace'] == 0 and d['control_hops'] == 0 and d['control_messages_per_token'] == 1 and d['decode_steps'] == 5 and 'decode_breakdown_ns_per_token' not in d")" = True ] \
  || fail "tcp_tp2_clocked: $(cat out.txt)"
check ipc_tp4 --transport ipc --tp 4 --pp 1
check ipc_pp2 --transport ipc --tp 1 --pp 2
[ "$(json "len(d['stages'])")" = 2 ] || fail "ipc_pp2 has 2 stages"
check ipc_pp2_tp2 --transport ipc --tp 2 --pp 2
check ipc_pp2_tp2_barrier --transport ipc --tp 2 --pp 2 --barrier
# Regression: a worker ready before the last shard left was once not counted (chip 0 never
# "ready"); 4 chips make that likely.
check tcp_pp2_tp2 --transport tcp --tp 2 --pp 2
check inproc_tp2 --transport inproc --tp 2 --pp 2
check sim_tp2 --transport sim --tp 2 --pp 1
# Self-clocked (issue #19): sim runs in virtual time, every instruction of every chip starting
# exactly when the schedule says (lag 0), the coordinator getting only the token stream (at most
# one message per token); a paced run over worker processes keeps the bits and reports its lag.
[ "$(json "d['self_clocked'] and d['schedule_lag_ns']['max'] == 0 and d['schedule_lag_ns']['instructions'] > 0 and len(d['schedule_lag_ns']['chips']) == d['chips'] and 0 < d['control_messages_per_token'] <= 1")" = True ] \
  || fail "sim_tp2: virtual time $(cat out.txt)"
check sim_pp2_tp2 --transport sim --tp 2 --pp 2
[ "$(json "d['schedule_lag_ns']['max'] == 0 and all(c['max'] == 0 for c in d['schedule_lag_ns']['chips'])")" = True ] \
  || fail "sim_pp2_tp2: virtual time $(cat out.txt)"
check ipc_pp2_paced --transport ipc --tp 1 --pp 2 --pace 50
[ "$(json "d['self_clocked'] and d['pace'] == 50 and d['schedule_lag_ns']['instructions'] > 0 and d['schedule_lag_ns']['p50'] <= d['schedule_lag_ns']['p95'] <= d['schedule_lag_ns']['max'] and 0 < d['control_messages_per_token'] <= 1")" = True ] \
  || fail "ipc_pp2_paced: $(cat out.txt)"
check tcp_tp2_paced --transport tcp --tp 2 --pp 1 --pace 20
[ "$(json "d['self_clocked'] and not d['virtual_time'] and d['control_hops'] == 0 and d['control_messages_per_token'] == 1 and d['decode_steps'] == 5 and 'decode_breakdown_ns_per_token' not in d")" = True ] \
  || fail "tcp_tp2_paced: $(cat out.txt)"
# --link-checksums (issue #19 item 7): every link CRC32C-checks its payloads and refuses
# unchecked frames; the bits stay the reference's. auto is the default.
check ipc_tp2_checksums_on --transport ipc --tp 2 --pp 1 --link-checksums on
[ "$(json "d['link_checksums']")" = on ] || fail "link_checksums on: $(cat out.txt)"
check tcp_tp2_checksums_off --transport tcp --tp 2 --pp 1 --link-checksums off
# Degrees whose slices are not whole 64-element chunks, and TP above the KV heads, distributed
# too: tiny-llama (4 heads, 2 KV heads, intermediate 172) at TP 2 and 4 over ipc.
T="$(dirname "$0")/../examples/models/tiny-llama"
expect_exit 0 "$LOCKSTEP" run --model "$T" --seed 1 --prompt 1,2,3 --max-new 4 --dump-logits tiny_ref.npy
for tp in 2 4; do
  expect_exit 0 "$LOCKSTEP" --log-level warn run --model "$T" --seed 1 --prompt 1,2,3 --max-new 4 \
    --transport ipc --tp $tp --dump-logits "tiny_tp$tp.npy"
  cmp -s tiny_ref.npy "tiny_tp$tp.npy" || fail "tiny-llama TP $tp over ipc: logits differ"
done
no_leftovers "tiny-llama tp"
# int8 weights (issue #22), both schemes: in process, sharded in process, and over ipc at TP 2 x
# 2 stages give the same logits bit for bit.
expect_exit 0 "$LOCKSTEP" weights generate --model $M --seed 9 --dtype bf16 -o gqa_bf16.safetensors
for scheme in int8-block32 int8-channel; do
  expect_exit 0 "$LOCKSTEP" weights quantize --model $M --weights gqa_bf16.safetensors --scheme $scheme -o gqa_$scheme.safetensors
  expect_exit 0 "$LOCKSTEP" run --model $M --weights gqa_$scheme.safetensors --prompt 5,6,7 --max-new 6 --dump-logits ${scheme}_ref.npy --json
  [ "$(json "d['weights_format']")" = $scheme ] || fail "$scheme: in-process run reports $(cat out.txt)"
  expect_exit 0 "$LOCKSTEP" run --model $M --weights gqa_$scheme.safetensors --prompt 5,6,7 --max-new 6 --stages 2 --tp 4 --dump-logits ${scheme}_sharded.npy
  cmp -s ${scheme}_ref.npy ${scheme}_sharded.npy || fail "$scheme: sharded in process differs from the reference"
  expect_exit 0 "$LOCKSTEP" --log-level warn run --model $M --weights gqa_$scheme.safetensors --prompt 5,6,7 --max-new 6 \
    --transport ipc --tp 2 --pp 2 --dump-logits ${scheme}_ipc.npy
  cmp -s ${scheme}_ref.npy ${scheme}_ipc.npy || fail "$scheme over ipc: logits differ from the reference"
done
no_leftovers "int8"

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

# 16 sequences through 2 stages, 16 slots: the self-clocked run and the barrier run give the same
# tokens and logits, sequence by sequence.
for i in $(seq 0 15); do echo "$((i + 1)),$((i * 7 % 50 + 2)),$((i * 13 % 90 + 3))"; done >p16.txt
expect_exit 0 "$LOCKSTEP" --log-level warn run --model $M --seed 9 --prompts p16.txt --max-new 4 \
  --transport ipc --tp 1 --pp 2 --slots 16 --barrier --dump-logits b16.npy --json
b16=$(json "[r['tokens'] for r in d['requests']]")
expect_exit 0 "$LOCKSTEP" --log-level warn run --model $M --seed 9 --prompts p16.txt --max-new 4 \
  --transport ipc --tp 1 --pp 2 --slots 16 --dump-logits s16.npy --json
[ "$(json "[r['tokens'] for r in d['requests']]")" = "$b16" ] || fail "16 sequences: self-clocked tokens differ from the barrier's"
# The 16 prefills come first (a step each), then 3 decode steps of 16 tokens, one message each.
[ "$(json "d['self_clocked'] and d['decode_steps'] == 3 and d['decode_tokens'] == 48 and d['control_messages_per_token'] == 1 / 16")" = True ] \
  || fail "16 sequences: $(cat out.txt)"
for i in $(seq 0 15); do
  cmp -s "b16.$i.npy" "s16.$i.npy" || fail "16 sequences: sequence $i's logits differ from the barrier's"
done
no_leftovers "16 sequences"

# Many concurrent requests (more than the pipeline's slots): each equals running it alone.
printf '5,6,7\n1\n9,8,7,6,5\n2,2\n100,3\n7\n' >prompts.txt
expect_exit 0 "$LOCKSTEP" --log-level warn run --model $M --seed 9 --prompts prompts.txt --max-new 5 \
  --transport ipc --tp 2 --pp 2 --slots 2 --dump-logits many.npy --json
[ "$(json "len(d['requests'])")" = 6 ] || fail "6 requests answered"
# Decode throughput counts a token per sequence in flight: with 2 slots some decode steps carry
# two, so decode tokens/s is more than one token per measured step, and it is tokens over time.
[ "$(json "d['decode_steps'] < d['decode_tokens'] <= 2 * d['decode_steps'] and abs(d['decode_tokens_per_s'] * d['measured_token_latency_ns'] * d['decode_steps'] / 1e9 - d['decode_tokens']) < 0.01 * d['decode_tokens']")" = True ] \
  || fail "many requests: decode throughput $(cat out.txt)"
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
expect_exit 2 "$LOCKSTEP" run --model $M --seed 9 --prompt 1 --transport ipc --link-checksums maybe
grep -q "link-checksums must be auto, on or off, got 'maybe'" err.txt || fail "bad --link-checksums: $(cat err.txt)"
expect_exit 2 "$LOCKSTEP" run --model $M --seed 9 --prompt 1 --transport ipc --pace 0.5
grep -q "pace must be >= 1" err.txt || fail "bad --pace: $(cat err.txt)"
expect_exit 2 "$LOCKSTEP" run --model $M --seed 9 --prompt 1 --transport ipc --pace 2 --barrier
grep -q "pace paces a self-clocked run; leave out --barrier" err.txt || fail "--pace --barrier: $(cat err.txt)"
expect_exit 2 "$LOCKSTEP" run --model $M --seed 9 --prompt 1 --transport ipc --inject kill:0@1
grep -q "failover runs on the barrier path only.*add --barrier" err.txt || fail "--inject self-clocked: $(cat err.txt)"
# A topology whose chips the host cannot pin: a pin map (as `topo host --map T --json` writes)
# naming a CPU this host lacks stops the run before any worker starts; one made here runs.
cat >badpins.json <<'JSON'
{"placements": [{"chip": 0, "pus": [0]}, {"chip": 1, "pus": [100000]}]}
JSON
expect_exit 1 "$LOCKSTEP" run --model $M --seed 9 --prompt 5,6,7 --max-new 6 --transport ipc --tp 2 --pp 1 \
  --pin-map badpins.json
grep -q "pin map badpins.json: chip 1 is pinned to CPU 100000, which this host cannot run on" err.txt \
  || fail "unpinnable chip: $(cat err.txt)"
grep -q "started" err.txt && fail "an unpinnable map started workers"
"$LOCKSTEP" topo generate --preset node -o node.topo >/dev/null
expect_exit 0 "$LOCKSTEP" --json topo host --map node.topo
cp out.txt goodpins.json
expect_exit 0 "$LOCKSTEP" --json run --model $M --seed 9 --prompt 5,6,7 --max-new 6 --transport ipc --tp 2 \
  --pp 1 --pin-map goodpins.json
[ "$(json "d['tokens']")" = "$ref_tokens" ] || fail "pinned by a map: $(cat out.txt)"
no_leftovers "bad inputs"

# A plan carries its model and topology: --plan alone is enough.
expect_exit 0 "$LOCKSTEP" plan --model $M --topology node --tp 2 --pp 1 -o node.plan
expect_exit 0 "$LOCKSTEP" --json run --plan node.plan --seed 9 --prompt 5,6,7 --max-new 6
[ "$(json "d['tokens']")" = "$ref_tokens" ] || fail "run --plan in process: $(cat out.txt)"
expect_exit 0 "$LOCKSTEP" --json run --plan node.plan --seed 9 --prompt 5,6,7 --max-new 6 --transport ipc
[ "$(json "d['tokens']")" = "$ref_tokens" ] || fail "run --plan --transport ipc: $(cat out.txt)"
# The prediction beside the measurement (issue #21): error = measured / predicted - 1, and one
# sequence in flight gains a token per predicted step.
[ "$(json "abs(d['prediction_error'] - (d['measured_token_latency_ns'] / d['predicted_token_latency_ns'] - 1)) < 1e-9 and abs(d['predicted_decode_tokens_per_s'] * d['predicted_token_latency_ns'] / 1e9 - 1) < 1e-9 and d['plan_token_latency_ns'] > 0 and d['cost_params'] == 'lpu-v1'")" = True ] \
  || fail "run --json prediction fields: $(cat out.txt)"
plain_prediction=$(json "d['predicted_token_latency_ns']")
# A plan made with a cost-parameters file holding runtime terms: run adds them to the step.
cat >runtime.yaml <<'YAML'
format: lockstep-cost-params/1
name: "slow-runtime"
figures:
  control_hops:
    value: 2
  control_hop_ns:
    value: 500000
  step_overhead_ns:
    value: 100000
YAML
expect_exit 0 "$LOCKSTEP" plan --model $M --topology node --tp 2 --pp 1 --cost-params runtime.yaml -o runtime.plan
# Self-clocked (the default) the coordinator is off the token path: the step overhead alone;
# --barrier sends every step through it: the two control hops too.
expect_exit 0 "$LOCKSTEP" --json run --plan runtime.plan --seed 9 --prompt 5,6,7 --max-new 6 --transport ipc
[ "$(json "d['predicted_token_latency_ns'] - $plain_prediction == 100000 and d['cost_params'] == 'slow-runtime'")" = True ] \
  || fail "run --plan with runtime terms predicts ${plain_prediction} + 0.1 ms: $(cat out.txt)"
expect_exit 0 "$LOCKSTEP" --json run --plan runtime.plan --seed 9 --prompt 5,6,7 --max-new 6 --transport ipc --barrier
[ "$(json "d['predicted_token_latency_ns'] - $plain_prediction == 1100000")" = True ] \
  || fail "run --plan --barrier with runtime terms predicts ${plain_prediction} + 1.1 ms: $(cat out.txt)"
no_leftovers "plan alone"

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

# Serving: lockstep-coordinator --serve stays up after deploying; three clients at once, each
# result equal to the in-process reference for its prompt; a refused request; a client's
# shutdown request stops the coordinator and its workers.
srv=ipc:///tmp/lockstep-rt-$$-clients
ctl=ipc:///tmp/lockstep-rt-$$-control
timeout 120 "$COORD" --listen $ctl --serve $srv --model $M --seed 9 --tp 2 --pp 2 --slots 2 \
  --transport ipc >serve.out 2>serve.err &
coord=$!
workers=()
for _ in 1 2 3 4; do timeout 120 "$WORKER" --coordinator $ctl --quiet & workers+=($!); done
for _ in $(seq 1 600); do grep -q "serving clients" serve.err && break; sleep 0.05; done
grep -q "serving clients at $srv" serve.err || { cat serve.err >&2; fail "no serving coordinator"; }
prompts_serve=("5,6,7" "9,8,7,6,5" "100,3")
sampling=("" "--temperature 0.8 --top-p 0.9 --sample-seed 4" "")
pids=()
for i in 0 1 2; do
  # shellcheck disable=SC2086
  timeout 60 "$LOCKSTEP" --json generate --coordinator $srv --prompt "${prompts_serve[$i]}" \
    --max-new 6 ${sampling[$i]} >"client$i.json" 2>"client$i.err" & pids+=($!)
done
for i in 0 1 2; do wait "${pids[$i]}" || { cat "client$i.err" >&2; fail "client $i failed"; }; done
for i in 0 1 2; do
  # shellcheck disable=SC2086
  expect_exit 0 "$LOCKSTEP" --json run --model $M --seed 9 --prompt "${prompts_serve[$i]}" --max-new 6 ${sampling[$i]}
  want=$(json "d['tokens']")
  got=$(python3 -c "import json; print(json.load(open('client$i.json'))['tokens'])")
  [ "$got" = "$want" ] || fail "client $i (${prompts_serve[$i]}): $got, the reference $want"
done
# Streaming: the plain output is the tokens, space-separated.
expect_exit 0 "$LOCKSTEP" generate --coordinator $srv --prompt 5,6,7 --max-new 6
[ "[$(tr ' ' ',' <out.txt | sed 's/,/, /g')]" = "$ref_tokens" ] || fail "streamed tokens: $(cat out.txt)"
expect_exit 1 "$LOCKSTEP" generate --coordinator $srv --prompt 1,2,3 --max-new 1000
grep -q "refused" err.txt || fail "a too-long request: $(cat err.txt)"
expect_exit 0 "$LOCKSTEP" generate --coordinator $srv --shutdown
wait $coord || { cat serve.err >&2; fail "the serving coordinator did not exit cleanly"; }
for w in "${workers[@]}"; do wait "$w" || fail "a worker did not exit cleanly after serving"; done
grep -q "served 4 requests, refused 1" serve.err || fail "serve stats: $(cat serve.err)"
# A client to an address where nothing listens: a clear error within its timeout.
start=$(date +%s%N)
expect_exit 1 "$LOCKSTEP" generate --coordinator $srv --prompt 1 --connect-timeout-ms 500
[ $(( ($(date +%s%N) - start) / 1000000 )) -lt 5000 ] || fail "unreachable coordinator took too long"
grep -q "no coordinator answered at $srv within 500 ms" err.txt || fail "unreachable: $(cat err.txt)"
rm -f /tmp/lockstep-rt-$$-control /tmp/lockstep-rt-$$-clients
no_leftovers "serving"

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
# Only a worker of this script's run (tagged with its run directory under our TMPDIR): the
# other integration scripts run workers for chip 1 at the same time under ctest -j2.
victim=$(pgrep -f "lockstep-worker .*--tag $TMPDIR/lockstep-run-[^ ]* --chip 1 " | head -1)
[ -n "$victim" ] && kill -9 "$victim"
wait $run; got=$?
set -e
[ -n "$victim" ] || fail "no worker for chip 1 to kill: $(cat err.txt)"
[ "$got" = 1 ] || { cat err.txt >&2; fail "killed worker: run exited $got, want 1"; }
grep -q "error: chip 1 (worker pid $victim.*killed by signal 9" err.txt || fail "killed worker not named: $(cat err.txt)"
no_leftovers "killed worker"
# SIGINT / SIGTERM to `lockstep run --transport ipc` mid-run: workers stopped, the run directory
# removed, exit 128 + signal. (Started without `timeout`, so the signal reaches lockstep itself;
# a watchdog bounds it instead.)
for sig in INT TERM; do
  "$LOCKSTEP" run --model $M --seed 9 --prompts long.txt --max-new 50 --transport ipc --tp 2 \
    --pp 2 --slots 2 >out.txt 2>err.txt &
  run=$!
  ( sleep 60; kill -9 $run 2>/dev/null ) & watchdog=$!
  for _ in $(seq 1 400); do grep -q "workers ready" err.txt && break; sleep 0.05; done
  grep -q "workers ready" err.txt || fail "SIG$sig: the run never got ready: $(cat err.txt)"
  kill -$sig $run
  set +e; wait $run; got=$?; set -e
  kill $watchdog 2>/dev/null || true
  want=$([ $sig = INT ] && echo 130 || echo 143)
  [ "$got" = "$want" ] || { cat err.txt >&2; fail "SIG$sig: lockstep run exited $got, want $want"; }
  grep -q "interrupted by signal" err.txt || fail "SIG$sig: no clear line: $(cat err.txt)"
  no_leftovers "SIG$sig"
done
echo "runtime tests passed"
