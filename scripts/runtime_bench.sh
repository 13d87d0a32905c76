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
# The host's speed drifts (a shared VM: the same binary's step swings 30% between minutes), so
# every configuration runs RUNS times (default 3), each run right after a run of the reference:
# "vs reference" is the reference's ms/token over this one's within a pair, and the row shows the
# median pair, every pair's ratio beside it. The reference row is its median run.
#
# Per configuration also: the compute in the step (the slowest rank's compute-thread CPU time), the
# link hops one step waits for in a row (the schedule's chain plus the coordinator's Step and
# result), compute + hops x the raw ZeroMQ one-way latency measured at the start of the run (a
# floor for the step), and the shard shipping rate.
#
# Layouts are STAGESxTP: 1x1, 1x2 and 1x4 (1, 2 and 4 chips as one TP group) and 2x2 (4 chips as
# two pipeline stages of TP 2: one sequence's step runs one stage at a time, so its two ranks
# have the two cores, where TP 4 puts four ranks' kernels and three times the link messages on
# them).
#
# A layout may end in /SEQS: that many sequences in flight at once (`--prompts` of SEQS different
# 8-token prompts, `--slots SEQS`), e.g. 2x1/16 = 2 pipeline stages serving 16 sequences. Each
# decode step then gives every sequence a token, and the stages work on different sequences at
# the same time: the pipeline's throughput, where one sequence shows its latency.
#
# Every distributed configuration runs both ways (MODES, default "barrier self-clocked"), paired
# with the same reference run and interleaved, the modes' order reversed every other round:
# reference, barrier, self-clocked, reference, self-clocked, barrier, ...
#   barrier       `--barrier`: a step ends on every chip before the next starts (the
#                 coordinator's Step brings the tokens), so each step has a bubble of one stage's
#                 work per stage boundary: S stages with M sequences keep a stage busy
#                 M / (M + S - 1) of the step (2 stages: 8 sequences 89%, 16 sequences 94%).
#   self-clocked  the default: every chip runs on its own, consecutive decode periods overlapping
#                 as the modulo schedule has them; the coordinator only receives the token stream.
#                 Its "decode ms/step" is from the sampling chip's token message before a decode
#                 step's to that step's (prefill steps left out, as the barrier's figures leave
#                 them out); it reports no per-chip breakdown or compute column.
#
# "vs reference" compares decode tokens/s (`decode_tokens_per_s`: tokens of the decode steps over
# their wall time), this row's over the reference's. The reference decodes one sequence at a time,
# a token per step whatever the number of sequences, so its decode tokens/s is 1 / its
# ms/token; for one sequence in flight the ratio is the latency ratio of earlier runs. With
# several, "decode ms/step" is one sequence's time between its tokens (a step gives each a token).
#
# The breakdown column is the mean chip's decode step by wall time (`decode_breakdown_ns_per_token`
# of `lockstep run --json`): compute / send / waiting on links (recv + forward) / the control
# plane (the coordinator's Step and the results), ms.
#
#   scripts/runtime_bench.sh [build/cli/lockstep] [NEW_TOKENS]
#   TRANSPORTS="ipc" LAYOUTS="1x2 2x1/16" RUNS=5 scripts/runtime_bench.sh ...   # a subset, more pairs
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
L=${1:-build/cli/lockstep}
NEW=${2:-16}
RUNS=${RUNS:-3}
work=$(mktemp -d /tmp/lockstep-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
M="$ROOT/examples/models/llama-205m"  # the benchmarks' 205M Llama
"$L" topo generate --preset node -o "$work/node.yaml" >/dev/null
sed -i 's/{name: lpu-v1, preset: lpu-v1}/{name: lpu-v1-8g, preset: lpu-v1, sram_bytes: 8589934592}/; s/defaults: {spec: lpu-v1}/defaults: {spec: lpu-v1-8g}/' \
  "$work/node.yaml"
grep -q "sram_bytes: 8589934592" "$work/node.yaml" || { echo "could not enlarge the chips' SRAM" >&2; exit 1; }
PROMPT=1,2,3,4,5,6,7,8
# Prompts for sequences in flight: the first is PROMPT (its tokens are checked against the
# reference), the others differ, 8 tokens each.
for i in $(seq 0 63); do
  seq -s, $((i * 8 + 1)) $((i * 8 + 8))
done >"$work/prompts64.txt"
# Raw ZeroMQ one-way latency per hop on this host, in this run (the transport benchmark's raw
# PAIR ping-pong, 4 KiB: a hidden vector of this model), for the "compute + hops" column.
TB=${TRANSPORT_BENCH:-$(dirname "$L")/../bench/transport_bench}
declare -A hop_us
for transport in ipc tcp; do
  if [ -x "$TB" ]; then
    hop_us[$transport]=$("$TB" --benchmark_filter="Latency/raw/$transport/4096" --benchmark_format=json 2>/dev/null |
      python3 -c "import json,sys; print(round(json.load(sys.stdin)['benchmarks'][0]['one_way_us'], 1))")
  else
    hop_us[$transport]=0
  fi
done
echo "raw ZeroMQ one-way latency, 4 KiB: ipc ${hop_us[ipc]} us, tcp ${hop_us[tcp]} us"
echo
printf '| config | decode tokens/s | vs reference | vs reference, every run | tokens/s (wall) | decode ms/step | compute ms/step | hops | compute + hops x raw (ms) | mean chip: compute / send / wait / control ms | load s | shards MiB/s | wall s | cpu s (user+sys) | load avg before |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
ref=""
run() {  # run OUT ARGS...: one `lockstep run --json` into OUT, its `time` figures into OUT.time
  local out=$1; shift
  local prompt=(--prompt "$PROMPT")
  if [ "${1:-}" = --seqs ]; then
    head -n "$2" "$work/prompts64.txt" >"$work/prompts.txt"
    prompt=(--prompts "$work/prompts.txt" --slots "$2")
    shift 2
  fi
  cut -d' ' -f1 /proc/loadavg >"$out.load"
  /usr/bin/time -f "%e %U %S" -o "$out.time" "$L" --log-level warn --json run --model "$M" --seed 1 \
    "${prompt[@]}" --max-new "$NEW" "$@" >"$out"
}
one() {  # one LABEL HOP_US ARGS...: RUNS rounds, each a reference run then every mode's run
  local label=$1 hop=$2; shift 2
  local i mode modes=(reference) order mode_args
  [ $# -gt 0 ] && read -r -a modes <<<"${MODES:-barrier self-clocked}"
  for i in $(seq "$RUNS"); do
    run "$work/ref.$i.json"
    if [ $# -gt 0 ]; then
      order=("${modes[@]}")
      if [ $((i % 2)) = 0 ]; then  # every other round the other way round: no mode always first
        order=()
        for mode in "${modes[@]}"; do order=("$mode" "${order[@]}"); done
      fi
      for mode in "${order[@]}"; do
        mode_args=()
        [ "$mode" = barrier ] && mode_args=(--barrier)
        run "$work/out.$mode.$i.json" "$@" "${mode_args[@]}"
      done
    fi
  done
  for mode in "${modes[@]}"; do
    local files=() row=$label
    [ $# -gt 0 ] && row="$label, $mode"
    for i in $(seq "$RUNS"); do files+=("$work/ref.$i.json" "$work/out.$mode.$i.json"); done
    pair "$row" "$hop" "${files[@]}"
  done
  if [ -z "$ref" ]; then
    ref=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tokens'])" "$work/ref.1.json")
  fi
  rm -f "$work"/ref.* "$work"/out.*
}
pair() {  # pair LABEL HOP_US REF1 OUT1 REF2 OUT2 ...: the row of the median pair
  local label=$1 hop=$2; shift 2
  python3 - "$label" "$hop" "$ref" "$@" <<'PY'
import json, os, sys
label, hop, ref = sys.argv[1:4]
files = sys.argv[4:]
def load(path):
    d = json.load(open(path))
    d["_time"] = open(path + ".time").read().split()
    d["_load"] = open(path + ".load").read().strip()
    return d
pairs = []
for r, o in zip(files[0::2], files[1::2]):
    rd = load(r)
    od = load(o) if os.path.exists(o) else rd  # the reference row: the reference itself
    if ref and str(od["tokens"]) != ref:
        sys.exit(f"{label}: tokens {od['tokens']} differ from the reference {ref}")
    if any(len(r["tokens"]) != len(od["tokens"]) for r in od.get("requests", [])):
        sys.exit(f"{label}: a request came back short: {od['requests']}")
    rate = od["decode_tokens_per_s"]
    ratio = rate / rd["decode_tokens_per_s"] if rd["decode_tokens_per_s"] > 0 else 0
    pairs.append((ratio, od))
dist = "critical_hops" in pairs[0][1]
# The median pair by ratio (the reference row: its median run), of an even count the upper middle.
pairs.sort(key=lambda p: p[0] if dist else -p[1]["measured_token_latency_ns"])
ratio, d = pairs[len(pairs) // 2]
lat = d["measured_token_latency_ns"] / 1e6
wall, user, sys_ = d["_time"]
compute = d.get("measured_compute_ns_per_token", 0) / 1e6
hops = d.get("critical_hops", 0) + d.get("control_hops", 0)
floor = compute + hops * float(hop) / 1000
ship = d.get("shard_ship_mib_per_s", 0)
b = d.get("decode_breakdown_ns_per_token")
parts = "-" if b is None else " / ".join(
    f"{v / 1e6:.1f}" for v in (b["compute"], b["send"], b["recv"] + b["forward"], b["control"]))
every = " ".join(f"{p[0]:.2f}" for p in pairs) if dist else " ".join(
    f"{p[1]['measured_token_latency_ns'] / 1e6:.1f} ms" for p in pairs)
cols = [label, f"{d['decode_tokens_per_s']:.2f}", f"{ratio:.2f}x" if dist else "1.00x", every,
        f"{d['tokens_per_s']:.2f}", f"{lat:.1f}", f"{compute:.1f}" if dist else "-", str(hops) if dist else "-",
        f"{floor:.1f}" if dist else "-", parts, f"{d.get('load_seconds', 0):.1f}",
        f"{ship:.0f}" if ship else "-", f"{float(wall):.1f}", f"{float(user) + float(sys_):.1f}",
        d["_load"]]
print("| " + " | ".join(cols) + " |")
PY
}
one "reference, 1 process" 0
if [ -n "${TPS:-}" ] && [ -z "${LAYOUTS:-}" ]; then  # the older spelling: TPS="2 4" = one stage
  LAYOUTS=$(for tp in $TPS; do printf '1x%s ' "$tp"; done)
fi
for transport in ${TRANSPORTS:-ipc tcp}; do
  for layout in ${LAYOUTS:-1x1 1x2 1x4 2x2 2x1/16 4x1/16}; do
    seqs=()
    if [ "${layout#*/}" != "$layout" ]; then seqs=(--seqs "${layout#*/}"); layout=${layout%/*}; fi
    pp=${layout%x*} tp=${layout#*x}
    if [ "$pp" = 1 ]; then label="$tp chip(s) (TP $tp)"; else label="$((pp * tp)) chips ($pp stages x TP $tp)"; fi
    [ ${#seqs[@]} -gt 0 ] && label="$label, ${seqs[1]} sequences"
    one "$transport, $label" "${hop_us[$transport]}" "${seqs[@]}" --transport $transport \
      --topology "$work/node.yaml" --tp "$tp" --pp "$pp"
  done
done
