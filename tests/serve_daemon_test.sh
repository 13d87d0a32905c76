#!/usr/bin/env bash
# lockstep-coordinator --http (issue #23): the OpenAI-compatible server of `lockstep serve` on the
# standalone coordinator, over lockstep-worker processes started by someone else (here: this
# script, as scripts/launch-local.sh or Slurm would). With curl: a greedy completion from token ids
# and one from text equal `lockstep run` in one process token for token (and text for text);
# /metrics passes `promtool check metrics` and counts them; SIGTERM stops the daemon cleanly: it
# exits 0 and tells every worker to exit (each exits 0). Flags that
# cannot work are refused with exit 2 before anything starts.
#   tests/serve_daemon_test.sh BUILD/cli/lockstep BUILD/cli/lockstep-coordinator BUILD/cli/lockstep-worker
set -euo pipefail
L=$1 COORD=$2 WORKER=$3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$(dirname "$0")/lib.sh"
private_tmp serve-daemon
TINY=$ROOT/examples/models/tiny-llama
command -v curl >/dev/null || fail "curl is needed (scripts/setup.sh installs it)"
command -v promtool >/dev/null || fail "promtool is needed (Debian's prometheus; scripts/setup.sh installs it)"
mkdir -p "$TMPDIR/tok"
byte_tokenizer "$TMPDIR/tok/tokenizer.json"

# Usage errors: named, exit 2, nothing started.
expect_exit 2 "$COORD" --model "$TINY" --seed 1 --http 127.0.0.1
err_has "--http must be HOST:PORT"
expect_exit 2 "$COORD" --model "$TINY" --seed 1 --http 127.0.0.1:0 --serve ipc://$TMPDIR/x
err_has "not both"
expect_exit 2 "$COORD" --model "$TINY" --seed 1 --prompt 1,2 --tokenizer "$TMPDIR/tok"
err_has "go with --http"
expect_exit 2 "$COORD" --model "$TINY" --seed 1 --http 127.0.0.1:0 --tokenizer "$TMPDIR/nothing"
err_has "--tokenizer $TMPDIR/nothing: no tokenizer.json there"
expect_exit 0 "$COORD" --help
grep -q -- "--http" out.txt || fail "lockstep-coordinator --help does not mention --http"

# The references, in one process.
expect_exit 0 "$L" run --model "$TINY" --seed 1 --prompt 1,2,3 --max-new 8 --json
mv out.txt ref_ids.json
expect_exit 0 "$L" run --model "$TINY" --seed 1 --tokenizer "$TMPDIR/tok" --text "hello" \
  --max-new 12 --json
mv out.txt ref_text.json

# The daemon (TP 1, PP 2 over ipc) and its two workers, started as a launcher would.
ctl="ipc://$TMPDIR/control"
"$COORD" --listen "$ctl" --transport ipc --ipc-dir "$TMPDIR" --model "$TINY" --seed 1 --tp 1 \
  --pp 2 --http 127.0.0.1:0 --tokenizer "$TMPDIR/tok" --served-model-name tiny \
  >daemon.out 2>daemon.err &
pid=$!
workers=()
trap 'kill -9 $pid ${workers[*]:-} 2>/dev/null || true; rm -rf "$TMPDIR"' EXIT
for _ in 1 2; do "$WORKER" --coordinator "$ctl" --quiet & workers+=($!); done
url=
for _ in $(seq 1 900); do
  url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' daemon.err | head -1)
  [ -n "$url" ] && break
  kill -0 $pid 2>/dev/null || { cat daemon.err >&2; fail "the daemon exited before listening"; }
  sleep 0.1
done
[ -n "$url" ] || { cat daemon.err >&2; fail "the daemon did not listen within 90 s"; }

code=$(curl -sS -o ids.json -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"model":"tiny","prompt":[1,2,3],"max_tokens":8,"temperature":0}' "$url/v1/completions")
[ "$code" = 200 ] || fail "completion (ids) status $code: $(cat ids.json)"
code=$(curl -sS -o text.json -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"model":"tiny","prompt":"hello","max_tokens":12,"temperature":0}' "$url/v1/completions")
[ "$code" = 200 ] || fail "completion (text) status $code: $(cat text.json)"
# The run's figures reach /metrics at the coordinator's next poll after a step, which may come
# just after a response went out: read until they count the last step (5 s at most).
cat >check.py <<'PY'
import json, re
ref_ids, ref_text = json.load(open("ref_ids.json")), json.load(open("ref_text.json"))
got = json.load(open("ids.json"))["choices"][0]
assert got["token_ids"] == ref_ids["tokens"] and got["finish_reason"] == "length", (got, ref_ids)
got = json.load(open("text.json"))["choices"][0]
assert (got["token_ids"], got["text"]) == (ref_text["tokens"], ref_text["text"]), (got, ref_text)
m = dict(re.findall(r'^(lockstep_[^ ]+) (\S+)$', open("metrics.txt").read(), re.M))
done = sum(int(m[f'lockstep_requests_total{{outcome="{o}"}}']) for o in ("length", "stop"))
assert done == 2, m
assert int(m["lockstep_generation_tokens_total"]) == len(ref_ids["tokens"]) + len(ref_text["tokens"]), m
assert int(m["lockstep_chips"]) == 2 and int(m["lockstep_slots"]) == 2, m
assert int(m["lockstep_decode_steps_total"]) > 0, m
# Per chip (PP 2, two chips): decode step times, and the bytes each put on its link to the
# other (activations forward, sampled tokens back).
chips = sorted(re.findall(r'^lockstep_chip_steps_total\{chip="(\d+)"\} (\d+)$', open("metrics.txt").read(), re.M))
assert len(chips) == 2 and all(int(n) == int(m["lockstep_decode_steps_total"]) for _, n in chips), m
for chip, _ in chips:
    assert float(m[f'lockstep_chip_step_seconds_total{{chip="{chip}",kind="step"}}']) > 0, m
    assert float(m[f'lockstep_chip_step_seconds_total{{chip="{chip}",kind="compute"}}']) > 0, m
links = {k: int(v) for k, v in m.items() if k.startswith("lockstep_link_bytes_total{")}
peers = sorted(re.search(r'chip="(\d+)",link="\d+",peer="(\d+)"', k).groups() for k in links)
(a, _), (b, _) = chips
assert peers == [(a, b), (b, a)] and all(n > 0 for n in links.values()), links
# Exactly the real tensors: forward, one fp32 row of tiny-llama's hidden size (64) per token a
# stage 0 step took (the prompts, then every generated token but the last); back, each step's
# 8-byte token message for each of the 2 slots (an idle slot's too).
rows = int(m["lockstep_prompt_tokens_total"]) + int(m["lockstep_generation_tokens_total"]) - 2
back, forward = sorted(links.values())
assert forward == 4 * 64 * rows and back == 8 * 2 * int(m["lockstep_steps_total"]), (links, m)
PY
for i in $(seq 1 100); do
  code=$(curl -sS -o metrics.txt -w '%{http_code}' "$url/metrics")
  [ "$code" = 200 ] || fail "/metrics status $code"
  python3 check.py 2>check.err && break
  [ "$i" = 100 ] && { cat check.err >&2; fail "the daemon's answers differ from lockstep run's (above)"; }
  sleep 0.05
done
promtool check metrics <metrics.txt >promtool.txt 2>&1 ||
  { cat promtool.txt metrics.txt >&2; fail "promtool check metrics"; }

# SIGTERM: served requests done, workers told to exit, exit 0, no run directory left.
kill -TERM $pid
set +e; timeout 30 tail --pid=$pid -f /dev/null; wait $pid; code=$?; set -e
[ "$code" = 0 ] || { cat daemon.err >&2; fail "the daemon exited $code after SIGTERM, want 0"; }
grep -q "stopped serving HTTP (signal 15)" daemon.err || { cat daemon.err >&2; fail "no stop line"; }
for w in "${workers[@]}"; do
  set +e; timeout 10 tail --pid="$w" -f /dev/null; wait "$w"; code=$?; set -e
  [ "$code" = 0 ] || fail "worker $w exited $code after the daemon's SIGTERM, want 0"
done
pid=
workers=()
no_run_leftovers "lockstep-coordinator --http"
echo "serve_daemon: OK"
