#!/usr/bin/env bash
# Runs the `lockstep` binary as a user would and checks exit codes, one-line errors and JSON.
set -euo pipefail
LOCKSTEP=${1:?usage: cli_test.sh path/to/lockstep}
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_exit() {  # expect_exit CODE cmd...
  local want=$1; shift
  set +e; "$@" >out.txt 2>err.txt; local got=$?; set -e
  [ "$got" = "$want" ] || { cat out.txt err.txt >&2; fail "'$*' exited $got, want $want"; }
}
expect_exit 0 "$LOCKSTEP" --version
grep -q '^lockstep [0-9]' out.txt || fail "--version output"
expect_exit 0 "$LOCKSTEP" --help
grep -q 'topo' out.txt || fail "--help lists topo"
expect_exit 2 "$LOCKSTEP" no-such-command
grep -q "unknown command 'no-such-command'" err.txt || fail "unknown command message"
[ "$(wc -l <err.txt)" = 1 ] || fail "usage error is one line"
expect_exit 2 "$LOCKSTEP" --log-level loud topo
# lockstep model show
MODELS=$(cd "$(dirname "$0")/../examples/models" && pwd)
expect_exit 0 "$LOCKSTEP" model --help
grep -q 'show' out.txt || fail "model --help lists show"
expect_exit 0 "$LOCKSTEP" model show "$MODELS/llama-2-7b"
grep -q '6,738,415,616' out.txt || fail "model show prints the Llama-2-7B total"
expect_exit 0 "$LOCKSTEP" model show "$MODELS/llama-2-70b/config.json" --dtype int8 --json
python3 - out.txt <<'PY' || fail "model show --json for Llama-2-70B"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["parameters"] == 68976648192, j["parameters"]
assert j["weight_bytes"] == 68976648192, j["weight_bytes"]  # int8: one byte each
assert j["kv_cache_bytes_per_token"] == 2 * 80 * 8 * 128, j["kv_cache_bytes_per_token"]
assert j["parameters_per_layer"]["total"] * 80 + 2 * j["parameters_embedding"] + 8192 == j["parameters"]
PY
expect_exit 0 "$LOCKSTEP" --json model show "$MODELS/mixtral-8x7b" --dtype bf16
python3 -c 'import json,sys; j=json.load(open("out.txt")); assert j["parameters"] == 46702792704 and j["weight_bytes"] == 2 * 46702792704' \
  || fail "model show --json for Mixtral-8x7B"
expect_exit 1 "$LOCKSTEP" model show "$MODELS/no-such-model"
grep -q 'no-such-model' err.txt || fail "missing config names the path"
[ "$(wc -l <err.txt)" = 1 ] || fail "missing config error is one line"
echo '{"model_type": "gpt2", "hidden_size": 8}' >bad_config.json
expect_exit 1 "$LOCKSTEP" model show bad_config.json
grep -q "model_type 'gpt2' is not supported" err.txt || fail "unsupported model_type message"
[ "$(wc -l <err.txt)" = 1 ] || fail "bad config error is one line"
expect_exit 2 "$LOCKSTEP" model show "$MODELS/tiny-llama" --dtype int4
expect_exit 2 "$LOCKSTEP" model show
# lockstep plan
expect_exit 0 "$LOCKSTEP" plan --help
expect_exit 0 "$LOCKSTEP" plan --model "$MODELS/llama-2-70b" --topology racks:8 --spare-nodes 0 --json -o plan.json
python3 - out.txt plan.json <<'PY' || fail "plan --json for Llama-2-70B on 8 racks"
import json, sys
j = json.load(open(sys.argv[1]))
assert json.load(open(sys.argv[2])) == j, "-o file differs from stdout"
p = j["predicted"]
assert 240 <= p["tokens_per_s_per_user"] <= 360, p  # Groq: ~300 tokens/s/user (+-20%)
assert p["token_latency_ns"] > 0 and p["tokens_per_s"] > 0
assert j["chips_used"] == sum(s["tp"] for s in j["stages"]) <= 576
layers = [l for s in j["stages"] for l in range(s["first_layer"], s["end_layer"])]
assert layers == list(range(80)), "every layer exactly once"
assert all(s["headroom_bytes_per_chip"] >= 0 for s in j["stages"])
PY
expect_exit 0 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" --topology rack --tp 4
grep -q 'tokens/s per user' out.txt || fail "plan prints predictions"
expect_exit 1 "$LOCKSTEP" plan --model "$MODELS/llama-2-70b" --topology rack
grep -q 'does not fit on rack' err.txt || fail "cannot-fit message"
grep -q 'smallest system that fits' err.txt || fail "cannot-fit names what would fit"
[ "$(wc -l <err.txt)" = 1 ] || fail "cannot-fit error is one line"
expect_exit 1 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" --topology rack --tp 3
expect_exit 2 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" --objective fastest
expect_exit 2 "$LOCKSTEP" plan
# lockstep schedule / simulate (the plan file does not carry model and topology yet)
expect_exit 0 "$LOCKSTEP" schedule --help
expect_exit 0 "$LOCKSTEP" simulate --help
expect_exit 0 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" --topology rack --tp 4 -o p7.plan
SCHED=(--plan p7.plan --model "$MODELS/llama-2-7b" --topology rack)
expect_exit 0 "$LOCKSTEP" schedule "${SCHED[@]}" --tokens 2 --json -o sched.json
python3 - out.txt sched.json <<'PY' || fail "schedule --json for Llama-2-7B on a rack"
import json, sys
j = json.load(open(sys.argv[1]))
s = json.load(open(sys.argv[2]))
assert j["valid"] and j["instructions"] > 0 and j["reservations"] > 0, j
assert j["token_latency_ns"] >= j["predicted_token_latency_ns"] * 0.9, j
assert len(s["programs"]) == j["chips_used"]
for p in s["programs"]:
    starts = [i["start_ns"] for i in p["instructions"]]
    assert starts == sorted(starts), "program order follows planned time"
for l in s["links"]:
    r = l["reservations"]
    assert all(a[1] <= b[0] for a, b in zip(r, r[1:])), "one transfer at a time per direction"
PY
expect_exit 0 "$LOCKSTEP" simulate "${SCHED[@]}" --tokens 3 --json --trace trace.json
python3 - out.txt sched.json trace.json <<'PY' || fail "simulate --json"
import json, sys
j = json.load(open(sys.argv[1]))
for k in ["token_latency_ns", "tokens_per_s", "tokens_per_s_per_user", "predicted_token_latency_ns",
          "compute_utilization", "link_utilization", "bubble_fraction"]:
    assert k in j, k
assert j["token_latency_ns"] >= j["bounds"]["token_latency_ns"]["bound"] > 0
assert j["tokens_per_s"] >= j["tokens_per_s_per_user"] > 0
t = json.load(open(sys.argv[3]))
assert len(t["traceEvents"]) > 100
PY
expect_exit 0 "$LOCKSTEP" simulate "${SCHED[@]}" --prefill --prompt-len 64 --json
python3 - out.txt <<'PY' || fail "simulate --prefill reports time to first token"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["time_to_first_token_ns"] >= j["bounds"]["time_to_first_token_ns"]["bound"] > 0, j
PY
expect_exit 0 "$LOCKSTEP" simulate "${SCHED[@]}" --jitter 0.1 --seed 3
grep -q 'token latency' out.txt || fail "simulate prints token latency"
LINK=$(python3 -c 'import json,sys; s=json.load(open("sched.json")); print(next(i["out"]["link"] for p in s["programs"] for i in p["instructions"] if i["kind"]=="send" and i["what"]=="activation"))')
expect_exit 1 "$LOCKSTEP" simulate "${SCHED[@]}" --fail-link "$LINK"
grep -q "link $LINK .*failed at .* activation send" err.txt || fail "failed link names chip, link and step"
[ "$(wc -l <err.txt)" = 1 ] || fail "failed link error is one line"
expect_exit 1 "$LOCKSTEP" schedule "${SCHED[@]/rack/node}"
grep -q "made for topology 'rack'" err.txt || fail "plan/topology mismatch message"
expect_exit 2 "$LOCKSTEP" schedule --plan p7.plan
expect_exit 2 "$LOCKSTEP" simulate "${SCHED[@]}" --tokens 0
echo "cli_test: all passed"
