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
json() { python3 -c "import json,sys; d=json.load(open('out.txt')); print($1)"; }

# topo generate / show / validate / route
for preset in node rack ring torus2d; do
  expect_exit 0 "$LOCKSTEP" topo generate --preset $preset -o $preset.yaml
done
expect_exit 0 "$LOCKSTEP" topo generate --preset system --racks 2 -o system2.yaml
expect_exit 0 "$LOCKSTEP" topo generate --preset hyperx --racks 12 -o hyperx12.yaml
expect_exit 0 "$LOCKSTEP" topo show hyperx12.yaml --json
[ "$(json "d['chips'], d['diameter_hops'] <= 5, d['max_ports_used'] <= 16")" = "864 True True" ] \
  || fail "hyperx: $(cat out.txt)"
expect_exit 0 "$LOCKSTEP" topo show rack.yaml --json
[ "$(json "d['chips'], d['spares'], d['diameter_hops'], d['connected']")" = "72 8 3 True" ] \
  || fail "topo show rack json: $(cat out.txt)"
expect_exit 0 "$LOCKSTEP" --json topo show system2.yaml
[ "$(json "d['chips'], d['racks']")" = "144 2" ] || fail "topo show system2"
expect_exit 0 "$LOCKSTEP" topo show rack.yaml
grep -q 'diameter: *3 hops' out.txt || fail "topo show text"
expect_exit 0 "$LOCKSTEP" topo validate rack.yaml
expect_exit 0 "$LOCKSTEP" topo route rack.yaml 0 63 --json
[ "$(json "d['hops'], d['path'][0], d['path'][-1], d['latency_ns']")" = "3 0 63 1800" ] \
  || fail "topo route json: $(cat out.txt)"
expect_exit 0 "$LOCKSTEP" topo route ring.yaml 0 2 --down-link 1:0 --json
[ "$(json "d['hops']")" = "6" ] || fail "route around a failed link"
expect_exit 1 "$LOCKSTEP" topo route ring.yaml 0 2 --down-link 1:0 --down-chip 5
grep -q 'no route from chip 0 to chip 2' err.txt || fail "unreachable route message"
expect_exit 1 "$LOCKSTEP" topo route rack.yaml 0 72
grep -q 'unknown chip 72' err.txt || fail "unknown chip message"
expect_exit 2 "$LOCKSTEP" topo generate --preset mesh -o x.yaml
grep -q "unknown preset 'mesh'" err.txt || fail "unknown preset message"
expect_exit 2 "$LOCKSTEP" topo generate --preset rack
expect_exit 1 "$LOCKSTEP" topo generate --preset system --racks 146 -o big.yaml
grep -q '1..145' err.txt || fail "too many racks message"
[ ! -e big.yaml ] || fail "failed generate left a file"
# A hand-edited file with a port out of range: one line naming file, line and field.
sed 's/{a: "0:0", b: "1:0"}/{a: "0:0", b: "1:16"}/' node.yaml > bad.yaml
expect_exit 1 "$LOCKSTEP" topo validate bad.yaml
[ "$(wc -l <err.txt)" = 1 ] || fail "validation error is one line"
grep -q 'bad.yaml:[0-9]*: links\[0\]' err.txt || fail "validation error names file, line, field: $(cat err.txt)"
expect_exit 1 "$LOCKSTEP" topo show missing.yaml
grep -q 'missing.yaml' err.txt || fail "missing file named"
expect_exit 0 "$LOCKSTEP" topo --help
expect_exit 0 "$LOCKSTEP" topo route --help

# topo host: this machine and synthetic hosts, text and JSON, chip pinning of a rack.
json_ok() { python3 -c 'import json,sys; json.load(sys.stdin)' <out.txt || fail "$1: not JSON"; }
expect_exit 0 "$LOCKSTEP" topo host
grep -q '^host: this machine' out.txt || fail "topo host names this machine"
expect_exit 0 "$LOCKSTEP" topo host --json --map-rack
json_ok "topo host --json --map-rack"
python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["cores"]>=1 and j["numa"] and len(j["placements"])==72, j' <out.txt \
  || fail "topo host --json fields"
expect_exit 0 "$LOCKSTEP" topo host --synthetic "numa:2 core:8 pu:2" --map-rack --json
python3 -c '
import json,sys
j=json.load(sys.stdin)
assert (j["numa_nodes"],j["cores"],j["pus"])==(2,16,32), j
dom={}
for p in j["placements"]: assert dom.setdefault(p["node"],p["numa"])==p["numa"], p
assert sorted(list(dom.values()).count(d) for d in (0,1))==[4,5], dom' <out.txt || fail "synthetic rack placement"
expect_exit 0 "$LOCKSTEP" topo host --synthetic "pack:2 numa:2 core:4 pu:1" --map-rack --no-spares
grep -q '64 chips of 8 nodes (0 spare) on 16 core' out.txt || fail "topo host --no-spares summary"
expect_exit 1 "$LOCKSTEP" topo host --synthetic "bogus:3"
[ "$(wc -l <err.txt)" = 1 ] || fail "bad --synthetic is one line"
grep -q "'bogus:3'.*valid example" err.txt || fail "bad --synthetic names it and an example"
expect_exit 2 "$LOCKSTEP" topo host --no-spares
expect_exit 0 "$LOCKSTEP" topo host --synthetic "numa:2 core:8 pu:2" --map node.yaml --json
python3 -c 'import json,sys; j=json.load(sys.stdin); assert sorted(p["core"] for p in j["placements"])==[0,1,2,3,4,5,6,7], j' <out.txt \
  || fail "topo host --map spreads a node over distinct cores"
expect_exit 2 "$LOCKSTEP" topo host --map node.yaml --map-rack
expect_exit 2 "$LOCKSTEP" topo host --frobnicate
[ "$(wc -l <err.txt)" = 1 ] || fail "unknown option is one line"
expect_exit 0 "$LOCKSTEP" topo host --help
grep -q -- '--synthetic' out.txt || fail "topo host --help lists --synthetic"
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
assert 270 <= p["tokens_per_s_per_user"] <= 330, p  # Groq: ~300 tokens/s/user (+-10%, issue #21)
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
expect_exit 0 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" --topology rack.yaml --json
python3 -c 'import json; j=json.load(open("out.txt")); assert j["chips_used"] <= 64 and j["predicted"]["tokens_per_s_per_user"] > 0, j' \
  || fail "plan on a topology file"
expect_exit 1 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" --topology no-such-topology.yaml
grep -q 'no-such-topology.yaml' err.txt || fail "plan names a missing topology file"
expect_exit 2 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" --topology racks:x
expect_exit 2 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" --objective fastest
expect_exit 2 "$LOCKSTEP" plan
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
# A sharded bf16 checkpoint (model-0000k-of-0000n + index): checks, and runs the same tokens as
# the single bf16 file.
expect_exit 0 "$LOCKSTEP" weights generate --model "$MODELS/tiny-llama" --seed 3 --dtype bf16 --shard-bytes 60000 -o wsharded --json
python3 -c 'import json; j=json.load(open("out.txt")); assert j["files"] == 5 and j["bytes"] > 247424, j' \
  || fail "weights generate --shard-bytes --json: $(cat out.txt)"
[ -f wsharded/model.safetensors.index.json ] && [ -f wsharded/model-00005-of-00005.safetensors ] \
  || fail "sharded checkpoint files: $(ls wsharded)"
expect_exit 0 "$LOCKSTEP" weights check --model "$MODELS/tiny-llama" --weights wsharded
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --weights wsharded --prompt 1,2,3 --max-new 6
cp out.txt run_sharded.txt
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --weights wb.safetensors --prompt 1,2,3 --max-new 6
cmp -s out.txt run_sharded.txt || fail "sharded and single bf16 checkpoints give different tokens"
expect_exit 2 "$LOCKSTEP" weights generate --model "$MODELS/tiny-llama" --seed 3 --shard-bytes 0 -o wsharded
# lockstep weights quantize / compare: an int8 checkpoint checks, runs, and is compared with its
# source; bad schemes and an int8 input are refused.
expect_exit 0 "$LOCKSTEP" weights quantize --model "$MODELS/tiny-llama" --weights wsharded --scheme int8-channel -o w8.safetensors --json
python3 -c 'import json; j=json.load(open("out.txt")); assert j["scheme"] == "int8-channel" and j["tensors"] == 37, j' \
  || fail "weights quantize --json: $(cat out.txt)"
expect_exit 0 "$LOCKSTEP" weights check --model "$MODELS/tiny-llama" --weights w8.safetensors --json
python3 -c 'import json; j=json.load(open("out.txt")); assert j["dtype"] == "int8-channel", j' || fail "weights check int8"
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --weights w8.safetensors --prompt 1,2,3 --max-new 6
expect_exit 0 "$LOCKSTEP" weights compare --model "$MODELS/tiny-llama" --weights w8.safetensors --against wsharded --tokens 32 --json
python3 -c 'import json; j=json.load(open("out.txt")); assert j["positions"] == 32 and 0 < j["max_abs_logit_diff"] < 1 and j["top1_agreement"] > 0.5, j' \
  || fail "weights compare --json: $(cat out.txt)"
expect_exit 2 "$LOCKSTEP" weights quantize --model "$MODELS/tiny-llama" --weights wsharded --scheme int4 -o x.safetensors
grep -q "int8-block32, int8-channel" err.txt || fail "bad --scheme names the valid ones: $(cat err.txt)"
expect_exit 1 "$LOCKSTEP" weights quantize --model "$MODELS/tiny-llama" --weights w8.safetensors --scheme int8-block32 -o x.safetensors
grep -q "int8 already" err.txt || fail "quantizing an int8 checkpoint: $(cat err.txt)"
expect_exit 2 "$LOCKSTEP" weights compare --model "$MODELS/tiny-llama" --weights w8.safetensors
expect_exit 2 "$LOCKSTEP" weights generate --model "$MODELS/tiny-llama" -o x.safetensors
expect_exit 2 "$LOCKSTEP" weights generate --model "$MODELS/tiny-llama" --seed 1 --dtype int8 -o x.safetensors
# Mixture of experts (issue #22): tiny-mixtral's weights under the Hugging Face names, run in
# process as the reference and sharded (uniform layout and a plan: every expert split over the
# shards), with int8 experts too; the distributed runtime refuses it before any worker starts.
expect_exit 0 "$LOCKSTEP" weights generate --model "$MODELS/tiny-mixtral" --seed 2 -o mx.safetensors
python3 - mx.safetensors <<'PY' || fail "tiny-mixtral tensor names"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
assert h["model.layers.1.block_sparse_moe.gate.weight"]["shape"] == [4, 64], h
assert h["model.layers.1.block_sparse_moe.experts.3.w2.weight"]["shape"] == [64, 128], h
assert h["model.layers.0.block_sparse_moe.experts.0.w1.weight"]["shape"] == [128, 64], h
assert not any(".mlp." in k for k in h), h
PY
expect_exit 0 "$LOCKSTEP" weights check --model "$MODELS/tiny-mixtral" --weights mx.safetensors
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-mixtral" --weights mx.safetensors --prompt 1,2,3 --max-new 8 --dump-logits mx_ref.npy
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-mixtral" --seed 2 --prompt 1,2,3 --max-new 8 --stages 2 --tp 2 --dump-logits mx_sharded.npy
cmp -s mx_ref.npy mx_sharded.npy || fail "tiny-mixtral sharded in process differs from the reference"
expect_exit 0 "$LOCKSTEP" plan --model "$MODELS/tiny-mixtral" --topology node --tp 2 --pp 2 -o mx.plan
expect_exit 0 "$LOCKSTEP" run --plan mx.plan --weights mx.safetensors --prompt 1,2,3 --max-new 8 --dump-logits mx_plan.npy
cmp -s mx_ref.npy mx_plan.npy || fail "tiny-mixtral by a plan differs from the reference"
expect_exit 0 "$LOCKSTEP" weights quantize --model "$MODELS/tiny-mixtral" --weights mx.safetensors --scheme int8-block32 -o mx8.safetensors
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-mixtral" --weights mx8.safetensors --prompt 1,2,3 --max-new 8 --dump-logits mx8_ref.npy
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-mixtral" --weights mx8.safetensors --prompt 1,2,3 --max-new 8 --stages 2 --tp 4 --dump-logits mx8_sharded.npy
cmp -s mx8_ref.npy mx8_sharded.npy || fail "int8 tiny-mixtral sharded differs from its reference"
expect_exit 1 "$LOCKSTEP" run --model "$MODELS/tiny-mixtral" --seed 2 --prompt 1,2,3 --max-new 2 --transport ipc --tp 2
grep -q "mixture of experts.*run it in process" err.txt || fail "distributed MoE refusal: $(cat err.txt)"
! grep -q 'workers registered\|started' err.txt || fail "a worker started for a distributed MoE run"
# lockstep run (reference): generated weights in memory == the same seed's file; greedy tokens
# are the argmax of the dumped logits rows.
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,2,3 --max-new 8
cp out.txt run_seed.txt
[ "$(wc -w <run_seed.txt)" = 8 ] || fail "run prints 8 tokens"
# In one process as distributed: every token needs a position (tiny-llama has 256).
expect_exit 1 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,2,3 --max-new 254
grep -qF "a prompt of 3 tokens + --max-new 254 exceeds the model's 256 positions" err.txt \
  || fail "run past the model's positions: $(cat err.txt)"
[ ! -s out.txt ] || fail "run past the model's positions printed tokens"
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
# A logits file that could not be written is refused before the run (it would come at its end,
# after the tokens), in process and distributed, and no worker is started.
for transport in "" "--transport sim"; do
  expect_exit 2 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 1 --prompt 1,2 --max-new 2 $transport \
    --dump-logits no-such-dir/x.npy
  grep -qF -- "--dump-logits no-such-dir/x.npy: folder no-such-dir does not exist" err.txt || fail "bad --dump-logits folder: $(cat err.txt)"
  ! grep -q 'workers registered' err.txt || fail "a worker started before the bad --dump-logits was refused"
  expect_exit 2 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 1 --prompt 1,2 --max-new 2 $transport \
    --dump-logits .
  grep -qF -- "--dump-logits .: is a folder, not a file name" err.txt || fail "--dump-logits a folder: $(cat err.txt)"
done
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,2,3 --max-new 8 --temperature 1 --top-p 0.9 --sample-seed 5
cp out.txt sampled1.txt
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,2,3 --max-new 8 --temperature 1 --top-p 0.9 --sample-seed 5
cmp -s out.txt sampled1.txt || fail "seeded sampling is not reproducible"
expect_exit 2 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,x
expect_exit 2 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --prompt 1
expect_exit 1 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,999
grep -q "token 999 is outside the vocabulary" err.txt || fail "bad token message"
# keys generate: Z85 key files, secret owner-only, no silent overwrite, --json.
keydir=$(mktemp -d)
expect_exit 0 "$LOCKSTEP" keys generate -o "$keydir/k" --json
grep -q '"public_key"' out.txt || fail "keys generate --json prints public_key"
[ "$(stat -c %a "$keydir/k/lockstep.secret")" = 600 ] || fail "secret key file mode is not 0600"
[ "$(head -c 40 "$keydir/k/lockstep.public" | wc -c)" = 40 ] || fail "public key file"
expect_exit 1 "$LOCKSTEP" keys generate -o "$keydir/k"
grep -q "already exists" err.txt || fail "keys generate refuses to overwrite"
expect_exit 0 "$LOCKSTEP" keys generate -o "$keydir/k" --force
expect_exit 2 "$LOCKSTEP" keys generate
rm -rf "$keydir"
expect_exit 0 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" --target-tokens-per-s 1 --json --log-level warn
python3 -c 'import json; j=json.load(open("out.txt")); assert j["topology"] == "rack", j["topology"]' \
  || fail "capacity planning picks one rack for Llama-2-7B"
expect_exit 0 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" -o plan.bin --log-level warn
expect_exit 0 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" -o plan2.bin --log-level warn
cmp -s plan.bin plan2.bin || fail "binary plans differ between runs"
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
expect_exit 1 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,2,3 --tp 8
grep -q "does not divide num_attention_heads 4" err.txt || fail "unshardable layout message"
# lockstep run --plan: the partitioner's plans for the tiny Llama (its default, TP 4 with the
# embedding in a stage of its own, TP 2 over 4 stages) give the reference's logits bit for bit.
expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --prompt 1,2,3 --max-new 6 --dump-logits tiny_ref.npy
for pl in "" "--tp 4 --pp 2" "--tp 2 --pp 4"; do
  # shellcheck disable=SC2086
  expect_exit 0 "$LOCKSTEP" plan --model "$MODELS/tiny-llama" --topology rack $pl -o tiny.plan
  expect_exit 0 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --plan tiny.plan --prompt 1,2,3 --max-new 6 --dump-logits tiny_plan.npy --json
  grep -q '"mode": "sharded' out.txt || fail "run --plan ($pl) runs sharded"
  cmp -s tiny_ref.npy tiny_plan.npy || fail "run --plan ($pl) logits differ from the reference"
done
expect_exit 1 "$LOCKSTEP" run --model gqa_config.json --seed 3 --plan tiny.plan --prompt 1,2,3
grep -q "'lockstep/tiny-llama' with 2 layers.*'gqa-tp8' with 4 layers" err.txt || fail "run --plan for another model"
expect_exit 2 "$LOCKSTEP" run --model "$MODELS/tiny-llama" --seed 3 --plan tiny.plan --stages 2 --prompt 1,2,3
# lockstep schedule / simulate: the plan file carries its model, topology and cost figures
expect_exit 0 "$LOCKSTEP" schedule --help
expect_exit 0 "$LOCKSTEP" simulate --help
expect_exit 0 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" --topology rack --tp 4 -o p7.plan
SCHED=(--plan p7.plan)
expect_exit 0 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" --topology rack --tp 4 -o p7.json
python3 - p7.json <<'PY' || fail "plan -o X.json carries the model spec, system and cost figures"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["model_spec"]["num_hidden_layers"] == 32 and j["system"]["chips"] == 72, j["system"]
assert j["cost_params"]["link"]["link_efficiency"] > 0
PY
# --model / --topology are optional checks that must match the plan.
expect_exit 0 "$LOCKSTEP" schedule --plan p7.plan --model "$MODELS/llama-2-7b" --topology rack
expect_exit 0 "$LOCKSTEP" schedule "${SCHED[@]}" --tokens 2 --json -o sched.json
python3 - out.txt sched.json <<'PY' || fail "schedule --json for Llama-2-7B on a rack"
import json, sys
j = json.load(open(sys.argv[1]))
s = json.load(open(sys.argv[2]))
assert j["valid"] and j["instructions"] > 0 and j["reservations"] > 0, j
assert j["token_latency_ns"] >= j["predicted_token_latency_ns"] * 0.9, j
assert len(s["chips"]) == j["chips_used"] and j["run_instructions"] == 2 * j["sequences"] * j["instructions"]
for c in s["chips"]:
    for body in c["bodies"]:
        starts = [i["start_ns"] for i in body]
        assert starts == sorted(starts), "program order follows planned time"
        links = {}
        for i in body:
            if i["kind"] in ("send", "forward"):
                links.setdefault(i["out"]["link"], []).append((i["start_ns"], i["end_ns"]))
        for r in links.values():
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
# The binary schedule (proto/schedule.capnp) is byte-identical across runs.
expect_exit 0 "$LOCKSTEP" schedule "${SCHED[@]}" --tokens 2 -o s1.schedule
expect_exit 0 "$LOCKSTEP" schedule "${SCHED[@]}" --tokens 2 -o s2.schedule
cmp -s s1.schedule s2.schedule || fail "binary schedules differ between runs"
[ "$(head -c 1 s1.schedule)" != "{" ] || fail "-o S.schedule is binary, not JSON"
# The modulo form: one period and a repeat rule; its size does not grow with --tokens.
expect_exit 0 "$LOCKSTEP" schedule "${SCHED[@]}" --modulo --tokens 2 --json
cp out.txt mod2.json
expect_exit 0 "$LOCKSTEP" schedule "${SCHED[@]}" --modulo --tokens 1000000 --json
python3 - mod2.json out.txt <<'PY' || fail "schedule --modulo: same size for 2 and 1,000,000 tokens"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert a["modulo"] and b["modulo"] and a["repeat_ns"] >= a["token_latency_ns"] > 0, a
assert a["schedule_bytes"] == b["schedule_bytes"] and a["instructions"] == b["instructions"], (a, b)
PY
expect_exit 0 "$LOCKSTEP" simulate "${SCHED[@]}" --modulo --tokens 3 --json
expect_exit 0 "$LOCKSTEP" schedule "${SCHED[@]}" --prefill --prompt-len 3000 --prompt-buckets 128,512,2048 --prefill-chunk 1024 --json
python3 - out.txt <<'PY' || fail "schedule --prefill reports the bucket, chunks and TTFT"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["prompt_bucket"] == 4096 and j["prefill_chunks"] == 4 and j["prefill_chunk_tokens"] == 1024, j
assert j["time_to_first_token_ns"] > 0, j
PY
expect_exit 2 "$LOCKSTEP" schedule "${SCHED[@]}" --prefill --prompt-buckets 128,x
expect_exit 0 "$LOCKSTEP" simulate "${SCHED[@]}" --jitter 0.1 --seed 3
grep -q 'token latency' out.txt || fail "simulate prints token latency"
LINK=$(python3 -c 'import json,sys; s=json.load(open("sched.json")); print(next(i["out"]["link"] for c in s["chips"] for b in c["bodies"] for i in b if i["kind"]=="send" and i["what"]=="activation"))')
expect_exit 1 "$LOCKSTEP" simulate "${SCHED[@]}" --fail-link "$LINK"
grep -q "link $LINK .*failed at .* activation send" err.txt || fail "failed link names chip, link and step"
[ "$(wc -l <err.txt)" = 1 ] || fail "failed link error is one line"
expect_exit 2 "$LOCKSTEP" simulate "${SCHED[@]}" --fail-link 999999
grep -q -- "--fail-link 999999: the plan's topology has links 0\.\." err.txt || fail "out-of-range --fail-link"
expect_exit 1 "$LOCKSTEP" schedule --plan p7.plan --topology node
grep -q "made for another topology than node (topology name 'rack' vs 'node8')" err.txt ||
  fail "plan/topology mismatch message"
expect_exit 1 "$LOCKSTEP" simulate --plan p7.plan --model "$MODELS/tiny-llama"
grep -q "made for another model than .*tiny-llama (hidden_size 4096 vs" err.txt ||
  fail "plan/model mismatch message"
[ "$(wc -l <err.txt)" = 1 ] || fail "mismatch error is one line"
expect_exit 1 "$LOCKSTEP" schedule --plan p7.json
grep -q "not a Lockstep plan" err.txt || fail "a JSON plan is not read back"
expect_exit 2 "$LOCKSTEP" schedule --tokens 2
expect_exit 2 "$LOCKSTEP" simulate "${SCHED[@]}" --tokens 0
# Pictures (issue #24): plan --svg and simulate --svg, rendered to PNG by rsvg-convert (Debian's
# librsvg2-bin, installed by scripts/setup.sh) and checked element by element.
command -v rsvg-convert >/dev/null || fail "rsvg-convert is missing (scripts/setup.sh installs librsvg2-bin)"
cat > check_svg.py <<'PY'
import struct, sys, xml.etree.ElementTree as ET
svg, png, what = sys.argv[1], sys.argv[2], sys.argv[3]
root = ET.parse(svg).getroot()  # well-formed XML or an exception
N = "{http://www.w3.org/2000/svg}"
assert root.tag == N + "svg" and not list(root.iter(N + "script")), "self-contained, no scripts"
assert not any("href" in k for e in root.iter() for k in e.attrib), "no external references"
cls = [e.get("class", "") for e in root.iter()]
def n(prefix): return sum(c == prefix or c.startswith(prefix + " ") for c in cls)
text = " ".join(t.text or "" for t in root.iter(N + "text"))
p = open(png, "rb").read()
assert p[:8] == b"\x89PNG\r\n\x1a\n", "rsvg-convert made a PNG"
w, h = struct.unpack(">II", p[16:24])
assert w >= 1000 and h >= 300, (w, h)
if what == "plan-rack":
    assert n("chip") == 72 and n("chip spare") == 8, (n("chip"), n("chip spare"))
    assert n("tp-group") >= 1 and n("route") >= 1 and n("route token") == 1 and n("legend") == 1
    assert "too many" not in text
elif what == "plan-big":
    assert n("chip") == 0 and n("node-cell") >= 1305 and n("node-cell spare") == 145, n("node-cell")
    assert "10,440 chips are too many to draw one by one" in text
elif what == "gantt":
    for kind in ["compute", "reduce", "send", "receive"]:
        assert cls.count("bar " + kind) > 0, kind
    assert n("critical") > 10 and n("critical-path") == 1 and n("legend") == 1
    assert "critical path (red) beyond compute:" in text
else:
    raise SystemExit("unknown check " + what)
PY
expect_exit 0 "$LOCKSTEP" plan --model "$MODELS/llama-2-7b" --topology rack --tp 4 --svg plan.svg
expect_exit 0 rsvg-convert plan.svg -o plan.png
python3 check_svg.py plan.svg plan.png plan-rack || fail "plan --svg on a rack"
expect_exit 0 "$LOCKSTEP" plan --model "$MODELS/tiny-llama" --topology racks:145 --svg big.svg
expect_exit 0 rsvg-convert big.svg -o big.png
python3 check_svg.py big.svg big.png plan-big || fail "plan --svg of 10,440 chips is drawn by node"
expect_exit 0 "$LOCKSTEP" simulate "${SCHED[@]}" --sequences 3 --svg gantt.svg
expect_exit 0 rsvg-convert gantt.svg -o gantt.png
python3 check_svg.py gantt.svg gantt.png gantt || fail "simulate --svg"
# An unwritable picture is one line naming it, and leaves nothing behind.
for cmd in "plan --model $MODELS/llama-2-7b --topology rack" "simulate ${SCHED[*]}"; do
  # shellcheck disable=SC2086
  expect_exit 1 "$LOCKSTEP" $cmd --svg no-such-dir/p.svg
  grep -q "cannot write no-such-dir/p.svg" err.txt || fail "$cmd --svg to a missing folder names it"
  [ "$(wc -l <err.txt)" = 1 ] || fail "$cmd --svg to a missing folder: one line"
done
[ -z "$(ls ./*.tmp-* 2>/dev/null)" ] || fail "a temporary file was left behind"
echo "cli_test: all passed"
