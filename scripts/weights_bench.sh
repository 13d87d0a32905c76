#!/usr/bin/env bash
# The figures of issue #22 (real checkpoints, int8 weights), each printed with the command that
# gives it:
#   load     TinyLlama-1.1B from a bf16 checkpoint (seeded, the published shape: 2.2 GB) over 2
#            and 4 lockstep-worker processes (ipc): seconds to ready workers, checkpoint MB/s
#            from a warm page cache and a cold one (the file's pages dropped first with
#            posix_fadvise DONTNEED, which needs no root), peak resident memory per process;
#   start    the 205M model of BENCHMARKS.md from `lockstep run --transport ipc --tp 2` start to
#            its first token (a run of one new token, wall time), fp32 file and seeded weights;
#   decode   205M in one process: fp32, bf16-loaded, int8-block32, int8-channel decode tokens/s
#            (`lockstep run --json` decode_tokens_per_s), and int8 over ipc at TP 2;
#   quality  int8 against fp32 on the same weights: max |delta logit| and top-1 agreement over
#            256 generated tokens (`lockstep weights compare`).
# Timed figures need a quiet machine (BENCHMARKS.md says which runs were); the script prints the
# load average before each row. Files are made once in WORK and reused by later runs.
#
#   scripts/weights_bench.sh [build/cli/lockstep] [WORK]
#   PARTS="load start" NEW=64 scripts/weights_bench.sh ...   # a subset; NEW: decode tokens
set -euo pipefail
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi
L=$(realpath "${1:-build/cli/lockstep}")
WORK=${2:-/tmp/lockstep-weights-bench}
PARTS=${PARTS:-load start decode quality}
NEW=${NEW:-32}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -x "$L" ] || { echo "weights_bench.sh: no lockstep binary at $L (build first)" >&2; exit 2; }
mkdir -p "$WORK"
cd "$WORK"

load() { cut -d' ' -f1 /proc/loadavg; }
field() {  # field FILE EXPR: a Python expression over the JSON object d
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}
drop_cache() {  # drop_cache FILE...: the files' pages out of the page cache
  python3 - "$@" <<'PY'
import os, sys
for path in sys.argv[1:]:
    names = [path] if os.path.isfile(path) else [os.path.join(path, n) for n in os.listdir(path)]
    for name in names:
        fd = os.open(name, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
PY
}

# A node whose chips hold 8 GiB (the models do not fit lpu-v1's 220 MiB at TP <= 4; nothing else
# changes: this host runs the kernels, not an LPU).
if [ ! -f node8g.yaml ]; then
  "$L" topo generate --preset node -o node8g.yaml >/dev/null
  sed -i 's/{name: lpu-v1, preset: lpu-v1}/{name: lpu-v1-8g, preset: lpu-v1, sram_bytes: 8589934592}/; s/defaults: {spec: lpu-v1}/defaults: {spec: lpu-v1-8g}/' node8g.yaml
fi
M205="$ROOT/examples/models/llama-205m"  # the benchmarks' 205M Llama
TINY="$ROOT/examples/models/tinyllama-1.1b"

if [[ " $PARTS " == *" load "* ]]; then
  [ -f tinyllama-bf16.safetensors ] || "$L" weights generate --model "$TINY" --seed 1 --dtype bf16 -o tinyllama-bf16.safetensors
  bytes=$(stat -c %s tinyllama-bf16.safetensors)
  echo "## load: TinyLlama-1.1B, bf16 checkpoint of $bytes bytes"
  echo "| workers | cache | load s | checkpoint MB/s | peak RSS MiB (coordinator; workers) | load avg |"
  echo "|---|---|---|---|---|---|"
  for tp in 2 4; do
    for cache in cold warm; do
      [ $cache = cold ] && drop_cache tinyllama-bf16.safetensors
      [ $cache = warm ] && cat tinyllama-bf16.safetensors >/dev/null
      before=$(load)
      "$L" --log-level warn --json run --model "$TINY" --weights tinyllama-bf16.safetensors \
        --prompt 1,2,3 --max-new 2 --transport ipc --tp $tp --topology node8g.yaml >load.json
      secs=$(field load.json "d['load_seconds']")
      rss=$(field load.json "'%.0f; %s' % (d['peak_rss_bytes']['coordinator'] / 2**20, ', '.join('%.0f' % (w['bytes'] / 2**20) for w in d['peak_rss_bytes']['workers']))")
      echo "| $tp | $cache | $secs | $(python3 -c "print('%.0f' % ($bytes / $secs / 1e6))") | $rss | $before |"
    done
  done
  echo "command: lockstep --json run --model examples/models/tinyllama-1.1b --weights tinyllama-bf16.safetensors --prompt 1,2,3 --max-new 2 --transport ipc --tp N --topology node8g.yaml"
fi

if [[ " $PARTS " == *" start "* ]]; then
  [ -f m205-fp32.safetensors ] || "$L" weights generate --model "$M205" --seed 1 -o m205-fp32.safetensors
  cat m205-fp32.safetensors >/dev/null
  echo "## start: 205M, lockstep run --transport ipc --tp 2 to its first token"
  echo "| weights | wall s (start to first token) | load s | load avg |"
  echo "|---|---|---|---|"
  for w in "--weights m205-fp32.safetensors" "--seed 1"; do
    before=$(load)
    t0=$(date +%s.%N)
    "$L" --log-level warn --json run --model "$M205" $w --prompt 1,2,3 --max-new 1 --transport ipc --tp 2 \
      --topology node8g.yaml >start.json
    t1=$(date +%s.%N)
    echo "| ${w#--} | $(python3 -c "print('%.2f' % ($t1 - $t0))") | $(field start.json "'%.2f' % d['load_seconds']") | $before |"
  done
fi

if [[ " $PARTS " == *" decode "* ]]; then
  [ -f m205-fp32.safetensors ] || "$L" weights generate --model "$M205" --seed 1 -o m205-fp32.safetensors
  [ -f m205-bf16.safetensors ] || "$L" weights generate --model "$M205" --seed 1 --dtype bf16 -o m205-bf16.safetensors
  for s in int8-block32 int8-channel; do
    [ -f m205-$s.safetensors ] || "$L" weights quantize --model "$M205" --weights m205-fp32.safetensors --scheme $s -o m205-$s.safetensors >/dev/null
  done
  echo "## decode: 205M, $NEW new tokens, decode tokens/s (lockstep run --json decode_tokens_per_s)"
  echo "| weights | one process | vs fp32 | ipc TP 2 | TP 2 vs one process | load avg |"
  echo "|---|---|---|---|---|---|"
  base=""
  for w in fp32 bf16 int8-block32 int8-channel; do
    before=$(load)
    "$L" --log-level warn --json run --model "$M205" --weights m205-$w.safetensors --prompt 1,2,3,4,5,6,7,8 \
      --max-new $NEW >dec.json
    one=$(field dec.json "'%.2f' % d['decode_tokens_per_s']")
    [ -z "$base" ] && base=$one
    tp2="-"; ratio="-"
    if [[ $w == int8* ]]; then
      "$L" --log-level warn --json run --model "$M205" --weights m205-$w.safetensors --prompt 1,2,3,4,5,6,7,8 \
        --max-new $NEW --transport ipc --tp 2 --topology node8g.yaml >dec2.json
      tp2=$(field dec2.json "'%.2f' % d['decode_tokens_per_s']")
      ratio=$(python3 -c "print('%.2fx' % ($tp2 / $one))")
    fi
    echo "| $w | $one | $(python3 -c "print('%.2fx' % ($one / $base))") | $tp2 | $ratio | $before |"
  done
fi

if [[ " $PARTS " == *" quality "* ]]; then
  [ -f m205-fp32.safetensors ] || "$L" weights generate --model "$M205" --seed 1 -o m205-fp32.safetensors
  echo "## quality: int8 against fp32, same weights, 256 tokens (lockstep weights compare)"
  echo "| scheme | max abs delta logit | mean abs delta logit | top-1 agreement |"
  echo "|---|---|---|---|"
  for s in int8-block32 int8-channel; do
    [ -f m205-$s.safetensors ] || "$L" weights quantize --model "$M205" --weights m205-fp32.safetensors --scheme $s -o m205-$s.safetensors >/dev/null
    "$L" --log-level warn --json weights compare --model "$M205" --weights m205-$s.safetensors \
      --against m205-fp32.safetensors --tokens 256 >q.json
    echo "| $s | $(field q.json "'%.4f' % d['max_abs_logit_diff']") | $(field q.json "'%.5f' % d['mean_abs_logit_diff']") | $(field q.json "'%d/%d' % (d['top1_agreements'], d['positions'])") |"
  done
fi
