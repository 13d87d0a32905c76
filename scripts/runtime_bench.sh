#!/usr/bin/env bash
# Decode speed of the distributed runtime (issue #7) on the 205M-parameter Llama of BENCHMARKS.md
# (hidden 1024, intermediate 2816, 16 layers, 16 heads, vocab 32000, fp32, generated weights):
# the single-process reference, then 1, 2 and 4 chips (TP) as lockstep-worker processes over ipc
# and tcp, all in one run, each checked token for token against the reference.
#
# The model (~820 MB of fp32) does not fit lpu-v1's 220 MiB chips at TP <= 4, so the runs use a
# node whose chips are given 8 GiB of SRAM (a topology file edited from `topo generate`): the
# plan's memory check passes, nothing else changes (this host runs the kernels, not an LPU).
#
# Per configuration it prints wall tokens/s (generated tokens over the wall time of the whole
# generation, prefill included), the measured decode latency per token, the loading time, and
# the CPU seconds of lockstep and all its workers (from `time`), with the load average before the
# run: on a shared 2-core machine wall-clock figures say more about the neighbours than about
# this code, CPU seconds much less so.
#
#   scripts/runtime_bench.sh [build/cli/lockstep] [NEW_TOKENS]
#
# TRANSPORTS and TPS (environment) pick the configurations, by default all of them:
#   TRANSPORTS=ipc TPS="1 2" scripts/runtime_bench.sh build/cli/lockstep 64
# The reference always runs first: every configuration is checked against its tokens.
set -euo pipefail
L=${1:-build/cli/lockstep}
NEW=${2:-16}
TRANSPORTS=${TRANSPORTS:-ipc tcp}
TPS=${TPS:-1 2 4}
work=$(mktemp -d /tmp/lockstep-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
cat >"$work/llama-205m.json" <<'JSON'
{"_name_or_path": "llama-205m", "model_type": "llama", "hidden_size": 1024,
 "intermediate_size": 2816, "num_hidden_layers": 16, "num_attention_heads": 16,
 "num_key_value_heads": 16, "vocab_size": 32000, "rms_norm_eps": 1e-5,
 "max_position_embeddings": 2048}
JSON
M="$work/llama-205m.json"
"$L" topo generate --preset node -o "$work/node.yaml" >/dev/null
sed -i 's/{name: lpu-v1, preset: lpu-v1}/{name: lpu-v1-8g, preset: lpu-v1, sram_bytes: 8589934592}/; s/defaults: {spec: lpu-v1}/defaults: {spec: lpu-v1-8g}/' \
  "$work/node.yaml"
grep -q "sram_bytes: 8589934592" "$work/node.yaml" || { echo "could not enlarge the chips' SRAM" >&2; exit 1; }
PROMPT=1,2,3,4,5,6,7,8
printf '| config | tokens/s (wall) | decode ms/token | load s | wall s | cpu s (user+sys) | load avg before |\n'
printf '|---|---|---|---|---|---|---|\n'
ref=""
one() {  # one LABEL ARGS...
  local label=$1; shift
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -f "%e %U %S" -o "$work/time" "$L" --log-level warn --json run --model "$M" --seed 1 \
    --prompt $PROMPT --max-new "$NEW" "$@" >"$work/out.json"
  read -r wall user sys <"$work/time"
  python3 - "$work/out.json" "$label" "$wall" "$user" "$sys" "$load" "$ref" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
label, wall, user, sys_, load, ref = sys.argv[2:8]
if ref and str(d["tokens"]) != ref:
    sys.exit(f"{label}: tokens {d['tokens']} differ from the reference {ref}")
lat = d.get("measured_token_latency_ns", 0) / 1e6
print(f"| {label} | {d['tokens_per_s']:.2f} | {lat:.1f} | {d.get('load_seconds', 0):.1f} | "
      f"{float(wall):.1f} | {float(user) + float(sys_):.1f} | {load} |")
PY
  if [ -z "$ref" ]; then ref=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tokens'])" "$work/out.json"); fi
}
one "reference, 1 process"
for transport in $TRANSPORTS; do
  for tp in $TPS; do
    one "$transport, $tp chip(s) (TP $tp)" --transport $transport --topology "$work/node.yaml" --tp $tp --pp 1
  done
done
