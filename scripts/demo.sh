#!/usr/bin/env bash
# README command 1: installs what is needed, builds, and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
L=build/cli/lockstep
out=${DEMO_DIR:-build/demo}
M=examples/models
mkdir -p "$out"
step() { echo; echo "== $*"; }
run() { echo "\$ lockstep ${*}"; $L "$@"; }

step "1. One rack: 9 nodes x 8 lpu-v1 chips, the 9th node a spare"
run topo generate --preset rack -o "$out/rack.yaml"
run topo show "$out/rack.yaml"
step "2. The deterministic route across it, and around a failed chip"
run topo route "$out/rack.yaml" 0 63
run topo route "$out/rack.yaml" 0 63 --down-chip 2
step "3. Llama-2-7B: how big, and how it splits over the rack"
run model show $M/llama-2-7b --dtype int8
run plan --model $M/llama-2-7b --topology "$out/rack.yaml" -o "$out/llama-2-7b.plan"
step "3b. Its static global schedule, run in virtual time (open the trace in ui.perfetto.dev)"
run schedule --plan "$out/llama-2-7b.plan"
run simulate --plan "$out/llama-2-7b.plan" --tokens 4 --trace "$out/llama-2-7b.trace.json"
echo "trace written to $out/llama-2-7b.trace.json"
step "4. Llama-2-70B on 8 racks with every node working (Groq's published setup: ~300 tokens/s/user)"
run topo generate --preset system --racks 8 --spare-nodes 0 -o "$out/8racks.yaml"
run plan --model $M/llama-2-70b --topology "$out/8racks.yaml" -o "$out/llama-2-70b.plan"
step "5. A tiny Llama with seeded weights: the reference, 2 pipeline stages, a plan - same bits"
run weights generate --model $M/tiny-llama --seed 7 -o "$out/tiny.safetensors"
run run --model $M/tiny-llama --weights "$out/tiny.safetensors" --prompt 1,2,3 --max-new 12 \
  --dump-logits "$out/reference.npy"
run run --model $M/tiny-llama --weights "$out/tiny.safetensors" --prompt 1,2,3 --max-new 12 \
  --stages 2 --dump-logits "$out/sharded.npy"
if cmp -s "$out/reference.npy" "$out/sharded.npy"; then
  echo "logits of every generated token: bit-identical ($out/reference.npy == $out/sharded.npy)"
else
  echo "logits differ between the reference and the sharded run" >&2
  exit 1
fi
run plan --model $M/tiny-llama --topology "$out/rack.yaml" --tp 2 --pp 3 -o "$out/tiny.plan"
run run --model $M/tiny-llama --weights "$out/tiny.safetensors" --prompt 1,2,3 --max-new 12 \
  --plan "$out/tiny.plan" --dump-logits "$out/planned.npy"
if cmp -s "$out/reference.npy" "$out/planned.npy"; then
  echo "run by the partitioner's plan: bit-identical ($out/reference.npy == $out/planned.npy)"
else
  echo "logits differ between the reference and the run by the plan" >&2
  exit 1
fi
step "6. This host, and where a rack's 72 simulated chips would be pinned"
run topo host --map-rack
step "7. A small Llama on the rack for real: 8 stages x TP 8 = all 64 working chips, one lockstep-worker process each, over ZeroMQ ipc links"
run plan --model $M/rack-demo --topology "$out/rack.yaml" --tp 8 --pp 8 -o "$out/rack-demo.plan"
run run --model $M/rack-demo --seed 5 --prompt 1,2,3 --max-new 8 --dump-logits "$out/rack-ref.npy"
run run --model $M/rack-demo --seed 5 --prompt 1,2,3 --max-new 8 --transport ipc \
  --topology "$out/rack.yaml" --plan "$out/rack-demo.plan" --dump-logits "$out/rack-ipc.npy"
if cmp -s "$out/rack-ref.npy" "$out/rack-ipc.npy"; then
  echo "64 worker processes: bit-identical to the single-process reference ($out/rack-ipc.npy)"
else
  echo "logits differ between the reference and the 64-process run" >&2
  exit 1
fi
