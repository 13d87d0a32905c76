#!/usr/bin/env bash
# Every plan the partitioner emits runs over worker processes (issue #19, item 3), bit for bit the
# in-process reference, over ipc and tcp:
#   - TP 16 on a rack: the group is wider than a node (8 chips), so it spans two nodes, is not
#     fully connected, and the compiler lays out hierarchical all-reduces (whole nodes,
#     row-parallel projections) whose node sums cross between the nodes forwarded by other chips;
#   - 4 stages x TP 2 on a 2-rack Dragonfly of 2-chip nodes: the stages sit on both racks and the
#     stage-to-stage routes (the token back to stage 0 among them) are forwarded over several chips.
# Each run's logits file must equal the reference's byte for byte, and its decode breakdown must
# show forwarding happened.
#   tests/any_plan_test.sh path/to/lockstep
set -euo pipefail
L=$1
source "$(dirname "$0")/lib.sh"
private_tmp any-plan
export LIMIT=120

cat >tp16.json <<'JSON'
{"_name_or_path": "tp16-rows", "model_type": "llama", "architectures": ["LlamaForCausalLM"],
 "hidden_size": 64, "head_dim": 32, "intermediate_size": 1024, "num_hidden_layers": 2,
 "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 200,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 32}
JSON
cat >six.json <<'JSON'
{"_name_or_path": "six-layers", "model_type": "llama", "architectures": ["LlamaForCausalLM"],
 "hidden_size": 64, "head_dim": 32, "intermediate_size": 512, "num_hidden_layers": 6,
 "num_attention_heads": 16, "num_key_value_heads": 8, "vocab_size": 200,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 32}
JSON
expect_exit 0 "$L" topo generate --preset rack -o rack.yaml
expect_exit 0 "$L" topo generate --preset system --racks 2 --chips-per-node 2 --nodes 2 \
  --spare-nodes 0 -o dragonfly.yaml

# placement PLAN.json TOPOLOGY.yaml KEY: per stage, the distinct values of KEY (node or rack) of
# its chips, as "stage:v,v stage:v ..."
placement() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, re, sys
plan, topo, key = json.load(open(sys.argv[1])), open(sys.argv[2]).read(), sys.argv[3]
where = {int(m.group(1)): (int(m.group(2)), int(m.group(3)))
         for m in re.finditer(r"\{id: (\d+), node: (\d+), rack: (\d+)", topo)}
col = 0 if key == "node" else 1
print(" ".join("%d:%s" % (s["index"], ",".join(str(v) for v in sorted({where[c][col] for c in s["chips"]})))
               for s in plan["stages"]))
PY
}

# same_as_reference NAME MODEL PLAN: the plan's runs over ipc and tcp give the reference's tokens
# and logits, self-clocked (the default) and with the per-step barrier (--barrier), whose decode
# breakdown shows chips forwarded messages on the way.
same_as_reference() {
  local name=$1 model=$2 plan=$3
  expect_exit 0 "$L" --json run --model "$model" --seed 1 --prompt 1,2,3 --max-new 6 \
    --dump-logits "$name-ref.logits"
  local want
  want=$(json "d['tokens']")
  for t in ipc tcp; do
    expect_exit 0 "$L" --json run --plan "$plan" --seed 1 --prompt 1,2,3 --max-new 6 \
      --transport $t --dump-logits "$name-$t-clocked.logits"
    [ "$(json "d['self_clocked'] and d['tokens']")" = "$want" ] ||
      fail "$name over $t, self-clocked: tokens $(json "d.get('tokens')") differ from the reference's $want"
    cmp -s "$name-ref.logits" "$name-$t-clocked.logits" ||
      fail "$name over $t, self-clocked: logits differ from the in-process reference"
    expect_exit 0 "$L" --json run --plan "$plan" --seed 1 --prompt 1,2,3 --max-new 6 \
      --transport $t --barrier --dump-logits "$name-$t.logits"
    [ "$(json "d['tokens']")" = "$want" ] ||
      fail "$name over $t: tokens $(json "d.get('tokens')") differ from the reference's $want"
    cmp -s "$name-ref.logits" "$name-$t.logits" ||
      fail "$name over $t: logits differ from the in-process reference"
    [ "$(json "int(d['decode_breakdown_ns_per_token']['forward'] > 0)")" = 1 ] ||
      fail "$name over $t: no chip forwarded a message (the routes this test is about were not taken)"
  done
}

# TP 16 across two nodes: hierarchical all-reduces (ring_chain_hops: their chain, 2 + the crossing).
expect_exit 0 "$L" --json plan --model tp16.json --topology rack.yaml --tp 16 --pp 1 -o tp16.plan
cp out.txt tp16-plan.json
[ "$(json "d['stages'][0]['tp']")" = 16 ] || fail "TP 16 plan: the stage has tp $(json "d['stages'][0]['tp']")"
[ "$(placement tp16-plan.json rack.yaml node)" = "0:0,1" ] ||
  fail "TP 16 plan: the group is not on two nodes: $(placement tp16-plan.json rack.yaml node)"
[ "$(json "int(d['stages'][0]['ring_chain_hops'] > 0)")" = 1 ] ||
  fail "TP 16 plan: no all-reduce across nodes (ring_chain_hops $(json "d['stages'][0]['ring_chain_hops']"))"
same_as_reference tp16 tp16.json tp16.plan

# 4 stages x TP 2 over two racks: forwarded stage-to-stage routes.
expect_exit 0 "$L" --json plan --model six.json --topology dragonfly.yaml --tp 2 --pp 4 -o df.plan
cp out.txt df-plan.json
racks=$(placement df-plan.json dragonfly.yaml rack)
[ "$racks" = "0:0 1:0 2:1 3:1" ] || fail "Dragonfly plan: stages by rack $racks, want two on each rack"
[ "$(json "max(s['send_hops'] for s in d['stages'])")" -ge 3 ] ||
  fail "Dragonfly plan: no stage-to-stage route of 3 or more hops (send_hops $(json "[s['send_hops'] for s in d['stages']]"))"
same_as_reference dragonfly six.json df.plan

# TP 2 where a layer's o is column-parallel (query width 64: 32-element slices) and its down
# row-parallel (intermediate 128: one 64-element chunk per rank): both all-reduces take the same
# form (the runtime tells a layer's collectives apart by it). It failed "a one-shot all-reduce of
# a column-parallel projection" when the down alone was one-shot.
cat >mixed.json <<'JSON'
{"_name_or_path": "mixed", "model_type": "llama", "architectures": ["LlamaForCausalLM"],
 "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
 "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 256,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64}
JSON
expect_exit 0 "$L" --json run --model mixed.json --seed 1 --prompt 1,2,3 --max-new 6 \
  --dump-logits mixed-ref.logits
for t in ipc tcp; do
  expect_exit 0 "$L" --json run --model mixed.json --seed 1 --prompt 1,2,3 --max-new 6 \
    --transport $t --tp 2 --dump-logits mixed-$t.logits
  cmp -s mixed-ref.logits mixed-$t.logits || fail "mixed TP 2 over $t: logits differ from the reference"
done

no_run_leftovers "any plan"
echo "any_plan_test: TP 16 over two nodes and 4 stages over two Dragonfly racks, ipc and tcp, bit for bit"
