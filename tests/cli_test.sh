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
# lockstep weights generate / check
expect_exit 0 "$LOCKSTEP" weights generate --model "$MODELS/tiny-llama" --seed 3 -o w1.safetensors
expect_exit 0 "$LOCKSTEP" weights generate --model "$MODELS/tiny-llama" --seed 3 -o w2.safetensors
cmp -s w1.safetensors w2.safetensors || fail "weights generate is not deterministic"
expect_exit 0 "$LOCKSTEP" weights generate --model "$MODELS/tiny-llama" --seed 3 --dtype bf16 -o wb.safetensors --json
python3 -c 'import json; j=json.load(open("out.txt")); assert j["tensors"] == 21 and j["parameters"] == 123712 and j["dtype"] == "bf16", j' \
  || fail "weights generate --json"
expect_exit 0 "$LOCKSTEP" weights check --model "$MODELS/tiny-llama" --weights wb.safetensors
expect_exit 1 "$LOCKSTEP" weights check --model "$MODELS/llama-2-7b" --weights wb.safetensors
grep -q "tensor 'model.embed_tokens.weight' has shape \[256, 64\]" err.txt || fail "weights check names the tensor"
[ "$(wc -l <err.txt)" = 1 ] || fail "weights check error is one line"
head -c 100 w1.safetensors >trunc.safetensors
expect_exit 1 "$LOCKSTEP" weights check --model "$MODELS/tiny-llama" --weights trunc.safetensors
grep -q "trunc.safetensors" err.txt || fail "malformed file error names the file"
expect_exit 2 "$LOCKSTEP" weights generate --model "$MODELS/tiny-llama" -o x.safetensors
expect_exit 2 "$LOCKSTEP" weights generate --model "$MODELS/tiny-llama" --seed 1 --dtype int8 -o x.safetensors
expect_exit 1 "$LOCKSTEP" weights generate --model "$MODELS/mixtral-8x7b" --seed 1 -o x.safetensors
# lockstep run (reference): generated weights in memory == the same seed's file; greedy tokens
# are the argmax of the dumped logits rows.
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,2,3 --max-new 8
cp out.txt run_seed.txt
[ "$(wc -w <run_seed.txt)" = 8 ] || fail "run prints 8 tokens"
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --weights w1.safetensors --prompt 1,2,3 --max-new 8 --json --dump-logits logits.npy
python3 - out.txt run_seed.txt logits.npy <<'PY' || fail "run --json / --dump-logits"
import json, struct, sys
j = json.load(open(sys.argv[1]))
assert j["tokens"] == [int(t) for t in open(sys.argv[2]).read().split()], j
raw = open(sys.argv[3], "rb").read()
assert raw[:8] == b"\x93NUMPY\x01\x00"
n = struct.unpack("<H", raw[8:10])[0]
assert "'shape': (8, 256)" in raw[10:10 + n].decode()
vals = struct.unpack("<%df" % (8 * 256), raw[10 + n:])
for i, t in enumerate(j["tokens"]):
    row = vals[i * 256:(i + 1) * 256]
    assert row.index(max(row)) == t, (i, t)
PY
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,2,3 --max-new 8 --temperature 1 --top-p 0.9 --sample-seed 5
cp out.txt sampled1.txt
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,2,3 --max-new 8 --temperature 1 --top-p 0.9 --sample-seed 5
cmp -s out.txt sampled1.txt || fail "seeded sampling is not reproducible"
expect_exit 2 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,x
expect_exit 2 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --prompt 1
expect_exit 1 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,999
grep -q "token 999 is outside the vocabulary" err.txt || fail "bad token message"
# lockstep run sharded (--stages/--tp): the same logits bits as the reference.
cat >gqa_config.json <<'JSON'
{"_name_or_path": "gqa-tp8", "model_type": "llama", "hidden_size": 128, "head_dim": 32,
 "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 16,
 "num_key_value_heads": 8, "vocab_size": 300}
JSON
expect_exit 0 "$LOCKSTEP" run --model gqa_config.json --seed 9 --prompt 5,6,7 --max-new 6 --dump-logits ref.npy
expect_exit 0 "$LOCKSTEP" run --model gqa_config.json --seed 9 --prompt 5,6,7 --max-new 6 --stages 2 --tp 8 --dump-logits tp8.npy --json
grep -q '"mode": "sharded \[0,2)x8 \[2,4)x8"' out.txt || fail "sharded run reports its layout"
cmp -s ref.npy tp8.npy || fail "sharded logits differ from the reference"
expect_exit 1 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,2,3 --tp 2
grep -q "multiples of 64" err.txt || fail "unshardable layout message"
echo "cli_test: all passed"
