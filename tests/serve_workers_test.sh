#!/usr/bin/env bash
# lockstep serve over worker processes (issue #23): `--transport ipc` and `--transport tcp` start
# one `lockstep-worker` process per chip (launch/), as `lockstep run --transport ipc|tcp` does.
# Over each, with curl: a greedy completion and a streamed greedy chat completion give the tokens
# and text `lockstep run` gives in one process; two concurrent requests over the pipeline's two
# slots each get their own run's tokens; SIGINT (ipc) / SIGTERM (tcp) with a stream in flight
# stop the server with 128 + the signal, the stream ending in an error event naming the signal,
# every worker process gone, no run directory left. (serve_test.sh covers the HTTP API itself
# over inproc.) Few python3 starts: they dominate the time on a loaded machine.
#   tests/serve_workers_test.sh BUILD/cli/lockstep   (lockstep-worker is found beside it)
set -euo pipefail
L=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$(dirname "$0")/lib.sh"
private_tmp serve-workers
TINY=$ROOT/examples/models/tiny-llama
command -v curl >/dev/null || fail "curl is needed (scripts/setup.sh installs it)"

mkdir -p "$TMPDIR/tok"
byte_tokenizer "$TMPDIR/tok/tokenizer.json"
cat >"$TMPDIR/tok/tokenizer_config.json" <<'JSON'
{"chat_template": "{% for m in messages %}<{{ m.role }}>{{ m['content'] | trim }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"}
JSON

# The references, in one process: ref_*.json as `run --json` prints them.
ref() {  # ref NAME ARGS...
  local name=$1; shift
  expect_exit 0 "$L" run --model "$TINY" --seed 1 "$@" --json
  mv out.txt "ref_$name.json"
}
ref short --prompt 1,2,3 --max-new 8
ref other --prompt 5,6,7,8 --max-new 6
ref long --prompt 1,2,3 --max-new 240
ref chat --tokenizer "$TMPDIR/tok" --text " hi " --chat --system S --max-new 10

pid=
trap '[ -z "$pid" ] || kill -9 $pid 2>/dev/null || true; rm -rf "$TMPDIR"' EXIT

# serve_over TRANSPORT SIGNAL LAYOUT...: one server, its requests, its shutdown.
serve_over() {
  local transport=$1 sig=$2; shift 2
  rm -f serve.out serve.err comp.json chat.txt c1.json c2.json inflight.txt
  "$L" --json serve --model "$TINY" --seed 1 --tokenizer "$TMPDIR/tok" --http 127.0.0.1:0 \
    --transport "$transport" "$@" --served-model-name tiny >serve.out 2>serve.err &
  pid=$!
  for _ in $(seq 1 900); do
    [ -s serve.out ] && break
    kill -0 $pid 2>/dev/null || { cat serve.err >&2; fail "$transport: serve exited before listening"; }
    sleep 0.1
  done
  [ -s serve.out ] || { cat serve.err >&2; fail "$transport: serve did not listen within 90 s"; }
  local url
  url=$(python3 -c '
import json, sys
d = json.load(open("serve.out"))
assert d["transport"] == sys.argv[1] and d["chips"] == 2 and d["slots"] == 2, d
print(d["url"])' "$transport") || fail "$transport: serve's --json line: $(cat serve.out)"
  # One lockstep-worker process per chip, children of the server.
  local workers
  workers=$(pgrep -P $pid -f lockstep-worker || true)
  [ "$(echo "$workers" | grep -c .)" = 2 ] || fail "$transport: worker processes: '$workers', want 2"

  local code
  code=$(curl -sS -o comp.json -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"model":"tiny","prompt":[1,2,3],"max_tokens":8,"temperature":0}' "$url/v1/completions")
  [ "$code" = 200 ] || fail "$transport: completion status $code: $(cat comp.json)"
  code=$(curl -sS -o chat.txt -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"model":"tiny","messages":[{"role":"system","content":"S"},{"role":"user","content":" hi "}],"max_tokens":10,"temperature":0,"stream":true}' \
    "$url/v1/chat/completions")
  [ "$code" = 200 ] || fail "$transport: chat status $code: $(cat chat.txt)"
  # Two requests at once, one per pipeline slot.
  curl -sS -o c1.json -H 'Content-Type: application/json' \
    -d '{"model":"tiny","prompt":[1,2,3],"max_tokens":8,"temperature":0}' "$url/v1/completions" &
  local c1=$!
  curl -sS -o c2.json -H 'Content-Type: application/json' \
    -d '{"model":"tiny","prompt":[5,6,7,8],"max_tokens":6,"temperature":0}' "$url/v1/completions" &
  local c2=$!
  wait $c1 || fail "$transport: a concurrent curl failed"
  wait $c2 || fail "$transport: a concurrent curl failed"
  python3 - <<'PY' || fail "$transport: the answers differ from lockstep run's (above)"
import json
ref = {n: json.load(open(f"ref_{n}.json")) for n in ("short", "other", "chat")}
comp = json.load(open("comp.json"))
assert comp["choices"][0]["token_ids"] == ref["short"]["tokens"], ("completion", comp, ref["short"])
assert comp["choices"][0]["finish_reason"] == "length" and comp["usage"]["completion_tokens"] == 8, comp
events = [l[6:] for l in open("chat.txt", encoding="utf-8").read().split("\n") if l.startswith("data: ")]
assert events[-1] == "[DONE]", ("chat stream end", events[-1])
chunks = [json.loads(e) for e in events[:-1]]
assert len(chunks) > 1 and all(c["object"] == "chat.completion.chunk" for c in chunks), chunks
text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
ids = [i for c in chunks for i in c["choices"][0]["token_ids"]]
assert (text, ids) == (ref["chat"]["text"], ref["chat"]["tokens"]), ("chat", text, ids, ref["chat"])
assert chunks[-1]["choices"][0]["finish_reason"] == "length", chunks[-1]
for f, want in (("c1.json", ref["short"]), ("c2.json", ref["other"])):
    got = json.load(open(f))
    assert got["choices"][0]["token_ids"] == want["tokens"], ("concurrent", f, got, want)
PY

  # Shutdown with a stream in flight: 128 + the signal, the stream's tokens so far then an error
  # event naming the signal and the stream's proper end, every worker gone, nothing left behind.
  # A worker held (SIGSTOP) from the first token until the signal is sent keeps the stream in
  # flight whatever the machine's speed.
  curl -sS -N -o inflight.txt -H 'Content-Type: application/json' \
    -d '{"model":"tiny","prompt":[1,2,3],"max_tokens":240,"temperature":0,"stream":true,"ignore_eos":true}' \
    "$url/v1/completions" 2>inflight.err &
  local inflight=$!
  for _ in $(seq 1 1500); do
    grep -q '^data: ' inflight.txt 2>/dev/null && break
    sleep 0.02
  done
  local held=${workers%%$'\n'*}
  kill -STOP "$held"
  kill -"$sig" $pid
  kill -CONT "$held"
  set +e; timeout 30 tail --pid=$pid -f /dev/null; wait $pid; code=$?; set -e
  pid=
  local signum
  signum=$(kill -l "$sig")
  [ "$code" = $((128 + signum)) ] || { cat serve.err >&2; fail "$transport: serve exited $code after SIG$sig, want $((128 + signum))"; }
  grep -q "interrupted by signal $signum" serve.err ||
    { cat serve.err >&2; fail "$transport: serve's stderr does not say it was interrupted"; }
  wait $inflight || fail "$transport: the stream in flight at SIG$sig did not end properly: $(cat inflight.err)"
  python3 - "$signum" <<'PY' || fail "$transport: stream at shutdown: $(tail -c 600 inflight.txt)"
import json, sys
want = json.load(open("ref_long.json"))["tokens"]
events = [json.loads(l[6:]) for l in open("inflight.txt").read().split("\n") if l.startswith("data: ")]
ids = [i for e in events[:-1] for i in e["choices"][0]["token_ids"]]
assert 0 < len(ids) < 240 and ids == want[:len(ids)], (ids, want)
assert "signal " + sys.argv[1] in events[-1]["error"]["message"], events[-1]
PY
  local w
  for w in $workers; do
    # A worker of ours still there (its pid not reused by something else) is an orphan.
    if { tr '\0' ' ' <"/proc/$w/cmdline"; } 2>/dev/null | grep -q lockstep-worker; then
      fail "$transport: worker $w still running after SIG$sig"
    fi
  done
  no_run_leftovers "$transport"
}

serve_over ipc INT --tp 1 --pp 2
serve_over tcp TERM --tp 2 --pp 1 --slots 2
echo "serve_workers: OK"
