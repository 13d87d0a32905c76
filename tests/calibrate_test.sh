#!/usr/bin/env bash
# lockstep calibrate (issue #21): the shipped lpu-v1 fit reproduces its observation, a plan
# made with a cost-parameters file records it, and bad observations are refused naming the
# entry and field, with nothing written.
set -euo pipefail
L=$1
SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$SRC/tests/lib.sh"
private_tmp calibrate

# The shipped fit: one figure, one observation; reproduces it within 10% and writes the file.
expect_exit 0 "$L" --json calibrate --observations "$SRC/partition/params/lpu-v1.observations.json" \
  --fit weight_stream_bytes_per_s -o fit.yaml
[ -s fit.yaml ] || fail "calibrate wrote no file"
err=$(json "d['observations'][0]['error']")
python3 -c "import sys; e=float('$err'); sys.exit(0 if abs(e) <= 0.10 else 1)" \
  || fail "the fit misses the observation by $err"
[ "$(json "d['observations'][0]['leave_one_out_error']")" = None ] || fail "leave-one-out with 1 observation"
json "d['leave_one_out_note']" | grep -q "needs more observations" || fail "no leave-one-out note"
grep -q "fitted: true" fit.yaml || fail "the fitted figure is not marked"
# Same value as the shipped file (and so as the built-in figures).
shipped=$(grep -A1 '^  weight_stream_bytes_per_s:' "$SRC/partition/params/lpu-v1.yaml" | sed -n 's/ *value: //p')
fitted=$(grep -A1 '^  weight_stream_bytes_per_s:' fit.yaml | sed -n 's/ *value: //p')
[ "$shipped" = "$fitted" ] || fail "fit gives $fitted, the shipped file holds $shipped"

# A plan made with the file records its figures; plan --explain shows the shares.
sed -e 's/^name: .*/name: "slow-fills"/' -e '/^  matrix_fill_ns:/,/^  [a-z]/ s/^    value: .*/    value: 900/' \
  fit.yaml > slow.yaml
expect_exit 0 "$L" --json plan --model "$SRC/examples/models/llama-2-7b" --topology rack \
  --cost-params slow.yaml --explain -o p.plan
[ "$(json "d['cost_params']['name']")" = slow-fills ] || fail "plan does not record the file"
[ "$(json "d['cost_params']['chip']['matrix_fill_ns']")" = 900 ] || fail "plan lacks the figure"
[ "$(json "d['time_shares']['token']['total_ns'] == d['predicted']['token_latency_ns']")" = True ] \
  || fail "time shares do not add up to the token latency"
# The compiler charges what the plan priced: its token latency within 5% of the plan's.
expect_exit 0 "$L" --json schedule --plan p.plan --sequences 1
[ "$(json "abs(d['token_latency_ns'] / d['predicted_token_latency_ns'] - 1) <= 0.05")" = True ] \
  || fail "schedule $(json "d['token_latency_ns']") ns vs plan $(json "d['predicted_token_latency_ns']") ns"

# run plans with the file too (--cost-params), and its prediction is priced with it; a --plan
# carries its own figures, so both together are refused, naming the flag.
expect_exit 0 "$L" --json run --transport sim --model "$SRC/examples/models/tiny-llama" --seed 1 \
  --prompt 1,2,3 --max-new 2 --cost-params slow.yaml
[ "$(json "d['cost_params']")" = slow-fills ] || fail "run --cost-params: the plan lacks the file's figures"
slow_ns=$(json "d['plan_token_latency_ns']")
expect_exit 0 "$L" --json run --transport sim --model "$SRC/examples/models/tiny-llama" --seed 1 \
  --prompt 1,2,3 --max-new 2
[ "$(json "d['plan_token_latency_ns'] < $slow_ns")" = True ] || fail "slower fills did not slow the plan"
expect_exit 2 "$L" run --transport sim --plan p.plan --seed 1 --prompt 1,2,3 --cost-params slow.yaml
err_has "--cost-params prices a new plan"

# Bad observations: the entry and field named, exit 1, nothing written.
bad() {  # bad 'JSON' 'message'
  printf '%s\n' "$1" > obs.json
  rm -f out.yaml
  expect_exit 1 "$L" calibrate --observations obs.json --fit weight_stream_bytes_per_s -o out.yaml
  err_has "$2"
  [ ! -e out.yaml ] || fail "a refused calibration wrote out.yaml"
}
M="\"model\": \"$SRC/examples/models/tiny-llama\", \"topology\": \"node\", \"dtype\": \"fp16\""
bad "[{\"name\": \"a\", $M, \"context\": 64, \"tokens_per_s_per_user\": 100}]" \
  "obs.json: observations[0] (a): batch: missing"
bad "[{\"name\": \"a\", \"model\": \"no/such/model\", \"topology\": \"node\", \"dtype\": \"fp16\", \"batch\": 1, \"context\": 64, \"tokens_per_s_per_user\": 100}]" \
  "obs.json: observations[0] (a): model: unknown model 'no/such/model'"
bad "[{\"name\": \"a\", $M, \"batch\": 1, \"context\": 64, \"tokens_per_s_per_user\": 0}]" \
  "obs.json: observations[0] (a): tokens_per_s_per_user: must be > 0"
bad "[{\"name\": \"a\", $M, \"batch\": 1, \"context\": 64, \"step_time_ns\": -5}]" \
  "observations[0] (a): step_time_ns: must be > 0"
bad "[{\"name\": \"a\", $M, \"batch\": 1, \"context\": 64}]" \
  "give exactly one of tokens_per_s_per_user or step_time_ns"
bad "[{\"name\": \"a\", $M, \"batch\": 1, \"context\": 64, \"tokens_per_s_per_user\": 100, \"colour\": 1}]" \
  "observations[0] (a): colour: unknown field"
printf '[{"name": "a", %s, "batch": 1, "context": 64, "tokens_per_s_per_user": 100}]\n' "$M" > obs.json
expect_exit 1 "$L" calibrate --observations obs.json --fit matrix_fill_ns=1:1e4 \
  --fit vector_fill_ns=1:1e4 -o out.yaml
err_has "1 observation(s) cannot determine 2 free figure(s)"
[ ! -e out.yaml ] || fail "wrote out.yaml"
expect_exit 2 "$L" calibrate --observations obs.json --fit matrix_fil -o out.yaml
err_has "--fit: unknown cost figure 'matrix_fil'"
# The held-out published rates: each gets a prediction from the shipped figures, and none of them
# is among the observations those figures were fitted to.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
expect_exit 0 "$ROOT/scripts/held_out_check.sh" "$L" "$ROOT/partition/params/lpu-v1.held-out.json" --json
[ "$(json "' '.join(r['name'] for r in d['rows'])")" = "groq-llama-2-7b groq-mixtral-8x7b" ] ||
  fail "held_out_check rows: $(json "[r['name'] for r in d['rows']]")"
[ "$(json "int(all(r['predicted_tokens_per_s_per_user'] > 0 and r['chips'] > 0 for r in d['rows']))")" = 1 ] ||
  fail "held_out_check: a row without a prediction: $(cat out.txt)"
for name in groq-llama-2-7b groq-mixtral-8x7b; do
  ! grep -q "$name" "$ROOT/partition/params/lpu-v1.observations.json" "$ROOT/partition/params/lpu-v1.yaml" ||
    fail "held-out $name is among the fitted observations"
done
expect_exit 0 "$L" calibrate --help
grep -q "leave-one-out" out.txt || fail "--help does not explain the fit"
echo "calibrate: ok"
