#!/usr/bin/env bash
# Load test of `lockstep serve` (issue #23), loopback only, bounded in clients and time: starts a
# server on 127.0.0.1 (any free port), runs N concurrent streaming clients for T seconds (each
# sends greedy completions of one of a few prompts, one after another), then checks every stream
# against `lockstep run` of its prompt token for token (no token lost, duplicated or reordered)
# and prints requests/s and the p50/p99 time to first token and inter-token latency measured by
# the clients. Exits 1 if any stream differs or any request failed (a 429 counts apart: the
# server was full, which --max-waiting allows; it is reported, not a failure).
#   scripts/serve_load.sh [--bin DIR] [--clients N] [--seconds T] [--slots M] [--max-tokens K]
#                         [--transport inproc|sim|ipc|tcp] [--json]
set -euo pipefail
BIN=build/cli; N=8; T=10; SLOTS=4; K=32; TRANSPORT=inproc; JSON=0
MODEL=examples/models/tiny-llama
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift ;;
    --clients) N=$2; shift ;;
    --seconds) T=$2; shift ;;
    --slots) SLOTS=$2; shift ;;
    --max-tokens) K=$2; shift ;;
    --transport) TRANSPORT=$2; shift ;;
    --model) MODEL=$2; shift ;;
    --json) JSON=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "serve_load.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "$N" -ge 1 ] && [ "$N" -le 64 ] || { echo "serve_load.sh: --clients must be in [1, 64]" >&2; exit 2; }
[ "$T" -ge 1 ] && [ "$T" -le 120 ] || { echo "serve_load.sh: --seconds must be in [1, 120]" >&2; exit 2; }
L=$BIN/lockstep
WORK=$(mktemp -d /tmp/lockstep-serve-load-XXXXXX)
export TMPDIR=$WORK
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
PROMPTS=("1,2,3" "5,6,7,8" "9" "10,20,30,40,50")
for i in "${!PROMPTS[@]}"; do
  "$L" --json run --model "$MODEL" --seed 1 --prompt "${PROMPTS[$i]}" --max-new "$K" >"$WORK/ref$i.json" 2>/dev/null
done
"$L" --json serve --model "$MODEL" --seed 1 --http 127.0.0.1:0 --slots "$SLOTS" \
  --max-waiting "$N" --transport "$TRANSPORT" --served-model-name m >"$WORK/serve.json" 2>"$WORK/serve.err" &
pid=$!
for _ in $(seq 1 600); do
  [ -s "$WORK/serve.json" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$WORK/serve.err" >&2; exit 1; }
  sleep 0.1
done
python3 - "$WORK" "$N" "$T" "$K" "$JSON" "${PROMPTS[@]}" <<'PY'
import http.client, json, sys, threading, time
work, n, secs, k, as_json = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
prompts = [[int(x) for x in p.split(",")] for p in sys.argv[6:]]
refs = [json.load(open(f"{work}/ref{i}.json"))["tokens"] for i in range(len(prompts))]
port = json.load(open(f"{work}/serve.json"))["port"]
lock = threading.Lock()
ttft, itl, done, full, bad = [], [], 0, 0, []
deadline = time.monotonic() + secs

def client(c):
    global done, full
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    i = c
    while time.monotonic() < deadline:
        p = i % len(prompts); i += 1
        body = json.dumps({"model": "m", "prompt": prompts[p], "max_tokens": k, "temperature": 0,
                           "ignore_eos": True, "stream": True})
        t0 = time.monotonic()
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status == 429:
            r.read(); time.sleep(0.01)
            with lock: full += 1
            continue
        if r.status != 200:
            with lock: bad.append(f"status {r.status}: {r.read()[:200]!r}")
            continue
        ids, times = [], []
        for line in r:
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            got = json.loads(line[6:])["choices"][0]["token_ids"]
            now = time.monotonic()
            ids += got; times += [now] * len(got)
        with lock:
            if ids != refs[p]:
                bad.append(f"prompt {prompts[p]}: {ids} != {refs[p]}")
            else:
                done += 1
                if times:
                    ttft.append(times[0] - t0)
                    itl.extend(b - a for a, b in zip(times, times[1:]))

start = time.monotonic()
threads = [threading.Thread(target=client, args=(c,)) for c in range(n)]
for t in threads: t.start()
for t in threads: t.join()
wall = time.monotonic() - start

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3 if xs else 0.0

out = {"clients": n, "seconds": round(wall, 2), "requests": done, "requests_per_s": round(done / wall, 2),
       "tokens_per_s": round(done * k / wall, 1), "full_429": full, "failed": len(bad),
       "ttft_ms": {"p50": round(pct(ttft, .5), 2), "p99": round(pct(ttft, .99), 2)},
       "itl_ms": {"p50": round(pct(itl, .5), 3), "p99": round(pct(itl, .99), 3)}}
if as_json:
    print(json.dumps(out))
else:
    print(f"{n} clients, {wall:.1f} s: {done} requests ({out['requests_per_s']}/s, {out['tokens_per_s']} tokens/s), "
          f"{full} answered 429, {len(bad)} failed; every stream equal to lockstep run: {not bad}")
    print(f"time to first token p50 {out['ttft_ms']['p50']} ms, p99 {out['ttft_ms']['p99']} ms; "
          f"inter-token latency p50 {out['itl_ms']['p50']} ms, p99 {out['itl_ms']['p99']} ms")
for b in bad[:5]:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad or done == 0 else 0)
PY
