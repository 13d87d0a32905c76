#!/usr/bin/env bash
# lockstep serve (issue #23): the OpenAI-compatible HTTP server in front of an in-process run
# (workers as threads, inproc links), driven with curl as a user would. Greedy completions over
# HTTP give the tokens and text `lockstep run` gives (token ids, text, chat template, streamed
# and not); streams are Server-Sent Events ending in `data: [DONE]`; bad requests get
# OpenAI-style errors with the right status naming the field, and the server keeps serving;
# concurrent requests each get their own run's tokens; /metrics passes promtool; SIGTERM stops it leaving nothing behind.
#   tests/serve_test.sh BUILD/cli/lockstep
set -euo pipefail
L=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$(dirname "$0")/lib.sh"
private_tmp serve
TINY=$ROOT/examples/models/tiny-llama
command -v curl >/dev/null || fail "curl is needed (scripts/setup.sh installs it)"

# A byte-level tokenizer whose 256 ids fit tiny-llama's vocabulary, with a chat template.
mkdir -p "$TMPDIR/tok"
byte_tokenizer "$TMPDIR/tok/tokenizer.json"
python3 - "$TMPDIR/tok" <<'PY'
import json, sys
json.dump({"chat_template": "{% for m in messages %}<{{ m.role }}>{{ m['content'] | trim }}"
           "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"},
          open(sys.argv[1] + "/tokenizer_config.json", "w"))
PY

# The references, in one process.
expect_exit 0 "$L" run --model "$TINY" --seed 1 --prompt 1,2,3 --max-new 8 --json
want_ids=$(json '",".join(map(str, d["tokens"]))')
expect_exit 0 "$L" run --model "$TINY" --seed 1 --prompt 5,6,7,8 --max-new 6 --json
want_ids2=$(json '",".join(map(str, d["tokens"]))')
expect_exit 0 "$L" run --model "$TINY" --seed 1 --tokenizer "$TMPDIR/tok" --text $'h\u00e9llo' --max-new 12 --json
want_text=$(json 'json.dumps(d["text"])'); want_text_ids=$(json '",".join(map(str, d["tokens"]))')
expect_exit 0 "$L" run --model "$TINY" --seed 1 --tokenizer "$TMPDIR/tok" --text " hi " --chat --system S --max-new 10 --json
want_chat=$(json 'json.dumps(d["text"])')
expect_exit 0 "$L" run --model "$TINY" --seed 1 --prompt 1,2,3 --max-new 8 --temperature 0.8 --top-p 0.9 --sample-seed 5 --json
want_sampled=$(json '",".join(map(str, d["tokens"]))')

# Usage errors, before anything starts.
expect_exit 2 "$L" serve --model "$TINY" --seed 1 ; err_has "missing --http HOST:PORT"
expect_exit 2 "$L" serve --model "$TINY" --seed 1 --http 127.0.0.1 ; err_has "--http must be HOST:PORT"
expect_exit 0 "$L" serve --help ; grep -q -- "/v1/chat/completions" out.txt || fail "serve --help"

"$L" --json serve --model "$TINY" --seed 1 --tokenizer "$TMPDIR/tok" --http 127.0.0.1:0 \
  --slots 2 --served-model-name tiny >serve.out 2>serve.err &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$TMPDIR"' EXIT
for _ in $(seq 1 600); do
  [ -s serve.out ] && break
  kill -0 $pid 2>/dev/null || { cat serve.err >&2; fail "serve exited before listening"; }
  sleep 0.1
done
URL=$(python3 -c "import json; print(json.load(open('serve.out'))['url'])")
[ "$(python3 -c "import json; print(json.load(open('serve.out'))['slots'])")" = 2 ] || fail "slots: $(cat serve.out)"

post() {  # post PATH BODY: the response body in out.txt, the status in code.txt
  curl -sS -o out.txt -w '%{http_code}' -H 'Content-Type: application/json' -d "$2" "$URL$1" >code.txt
}
status_is() { [ "$(cat code.txt)" = "$1" ] || fail "status $(cat code.txt), want $1: $(cat out.txt)"; }

curl -sS -o out.txt -w '%{http_code}' "$URL/health" >code.txt; status_is 200
curl -sS -o out.txt "$URL/v1/models"
[ "$(json 'd["data"][0]["id"]')" = tiny ] || fail "/v1/models: $(cat out.txt)"

# Greedy over HTTP = lockstep run, token for token: ids in, ids out.
post /v1/completions '{"model":"tiny","prompt":[1,2,3],"max_tokens":8,"temperature":0}'; status_is 200
[ "$(json '",".join(map(str, d["choices"][0]["token_ids"]))')" = "$want_ids" ] || fail "completion ids: $(cat out.txt), want $want_ids"
[ "$(json 'd["usage"]["prompt_tokens"], d["usage"]["completion_tokens"], d["usage"]["total_tokens"]')" = "3 8 11" ] || fail "usage: $(cat out.txt)"
[ "$(json 'd["choices"][0]["finish_reason"]')" = length ] || fail "finish_reason: $(cat out.txt)"
[ "$(json 'd["object"]')" = text_completion ] || fail "object: $(cat out.txt)"
# Sampling: temperature, top_p and seed as run's --temperature --top-p --sample-seed.
post /v1/completions '{"model":"tiny","prompt":[1,2,3],"max_tokens":8,"temperature":0.8,"top_p":0.9,"seed":5}'; status_is 200
[ "$(json '",".join(map(str, d["choices"][0]["token_ids"]))')" = "$want_sampled" ] || fail "sampled ids: $(cat out.txt), want $want_sampled"
# Text in, text out.
post /v1/completions "{\"model\":\"tiny\",\"prompt\":\"h\\u00e9llo\",\"max_tokens\":12,\"temperature\":0}"; status_is 200
[ "$(json 'json.dumps(d["choices"][0]["text"])')" = "$want_text" ] || fail "completion text: $(cat out.txt), want $want_text"
[ "$(json '",".join(map(str, d["choices"][0]["token_ids"]))')" = "$want_text_ids" ] || fail "text ids: $(cat out.txt)"
# The same streamed: chunks whose texts add up, then [DONE].
post /v1/completions "{\"model\":\"tiny\",\"prompt\":\"h\\u00e9llo\",\"max_tokens\":12,\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"; status_is 200
python3 - "$want_text" "$want_text_ids" <<'PY' || fail "streamed completion: $(head -c 600 out.txt)"
import json, sys
events = [l[6:] for l in open("out.txt", encoding="utf-8").read().split("\n") if l.startswith("data: ")]
assert events[-1] == "[DONE]", events[-1]
chunks = [json.loads(e) for e in events[:-1]]
assert all(c["object"] == "text_completion" for c in chunks)
text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
ids = [i for c in chunks if c["choices"] for i in c["choices"][0]["token_ids"]]
assert text == json.loads(sys.argv[1]), (text, sys.argv[1])
assert ",".join(map(str, ids)) == sys.argv[2], ids
assert chunks[-2]["choices"][0]["finish_reason"] == "length"
assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12
PY
# Chat: the template, the same text as run --chat, streamed and not.
chat='{"model":"tiny","messages":[{"role":"system","content":"S"},{"role":"user","content":" hi "}],"max_tokens":10,"temperature":0'
post /v1/chat/completions "$chat}"; status_is 200
[ "$(json 'json.dumps(d["choices"][0]["message"]["content"])')" = "$want_chat" ] || fail "chat: $(cat out.txt), want $want_chat"
[ "$(json 'd["usage"]["prompt_tokens"]')" = "$(printf '<system>S<user>hi<assistant>' | wc -c)" ] || fail "chat prompt tokens: $(cat out.txt)"
post /v1/chat/completions "$chat,\"stream\":true}"; status_is 200
python3 - "$want_chat" <<'PY' || fail "streamed chat: $(head -c 600 out.txt)"
import json, sys
events = [l[6:] for l in open("out.txt", encoding="utf-8").read().split("\n") if l.startswith("data: ")]
assert events[-1] == "[DONE]"
chunks = [json.loads(e) for e in events[:-1]]
assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
assert all(c["object"] == "chat.completion.chunk" for c in chunks)
text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
assert text == json.loads(sys.argv[1]), (text, sys.argv[1])
assert chunks[-1]["choices"][0]["finish_reason"] == "length"
PY
# A stop string ends the text before it.
stop=$(python3 -c 'import json, sys; print(json.dumps(json.loads(sys.argv[1])[3:5]))' "$want_text")
if [ "$(python3 -c 'import json, sys; print(len(json.loads(sys.argv[1])))' "$stop")" = 2 ]; then
  post /v1/completions "{\"model\":\"tiny\",\"prompt\":\"h\\u00e9llo\",\"max_tokens\":12,\"temperature\":0,\"stop\":[$stop]}"; status_is 200
  python3 - "$want_text" "$stop" <<'PY' || fail "stop: $(cat out.txt)"
import json, sys
d = json.load(open("out.txt")); full = json.loads(sys.argv[1]); stop = json.loads(sys.argv[2])
assert d["choices"][0]["text"] == full[:full.find(stop)], d
assert d["choices"][0]["finish_reason"] == "stop"
PY
fi

# Bad requests: OpenAI-style errors naming the field; the server keeps serving.
bad() {  # bad PATH BODY STATUS PARAM
  post "$1" "$2"; status_is "$3"
  [ "$(json 'd["error"]["param"]')" = "$4" ] || fail "error param for $2: $(cat out.txt)"
  [ -n "$(json 'd["error"]["message"]')" ] || fail "error message: $(cat out.txt)"
}
bad /v1/completions '{"model":"tiny","prompt":[1,2' 400 None
bad /v1/completions '{"model":"tiny"}' 400 prompt
bad /v1/completions '{"model":"tiny","prompt":[1],"max_tokens":"8"}' 400 max_tokens
bad /v1/completions '{"model":"gpt-4","prompt":[1]}' 404 model
bad /v1/completions '{"model":"tiny","prompt":[1,2,3],"max_tokens":300}' 400 max_tokens
grep -q "maximum context length is 256" out.txt || fail "context error: $(cat out.txt)"
bad /v1/chat/completions '{"model":"tiny","messages":"hi"}' 400 messages
curl -sS -o out.txt -w '%{http_code}' "$URL/v1/nothing" >code.txt; status_is 404
curl -sS -o out.txt -w '%{http_code}' "$URL/v1/completions" >code.txt; status_is 405

# Concurrent requests (more than the 2 slots): each gets its own run's tokens.
clients=()
for i in 1 2 3; do
  curl -sS -o "c$i.json" -H 'Content-Type: application/json' \
    -d '{"model":"tiny","prompt":[1,2,3],"max_tokens":8,"temperature":0}' "$URL/v1/completions" &
  clients+=($!)
done
curl -sS -o c4.json -H 'Content-Type: application/json' \
  -d '{"model":"tiny","prompt":[5,6,7,8],"max_tokens":6,"temperature":0,"stream":true}' "$URL/v1/completions" &
clients+=($!)
for c in "${clients[@]}"; do wait "$c" || fail "a concurrent curl failed"; done
for i in 1 2 3; do
  got=$(python3 -c "import json; d=json.load(open('c$i.json')); print(','.join(map(str, d['choices'][0]['token_ids'])))" 2>/dev/null || cat "c$i.json")
  [ "$got" = "$want_ids" ] || fail "concurrent request $i: $got, want $want_ids"
done
got=$(python3 -c "
import json
ev=[l[6:] for l in open('c4.json').read().split('\n') if l.startswith('data: ')][:-1]
print(','.join(str(i) for e in ev for i in json.loads(e)['choices'][0]['token_ids']))")
[ "$got" = "$want_ids2" ] || fail "concurrent stream: $got, want $want_ids2"

# The official OpenAI Node client (npm `openai`, test-only: scripts/setup.sh installs it into
# tests/js): a streaming chat completion, a plain completion and an unknown model.
generated_min=90  # the tokens the curl requests above generate; the Node client's add 10 more
if [ -d "$ROOT/tests/js/node_modules/openai" ] && command -v node >/dev/null; then
  generated_min=100
  LIMIT=60 expect_exit 0 node "$ROOT/tests/js/openai_client.mjs" "$URL/v1" tiny
  python3 - "$want_chat" "$want_ids" <<'PY' || fail "OpenAI client: $(cat out.txt)"
import json, sys
d = json.load(open("out.txt"))
assert d["chat"] == json.loads(sys.argv[1]), (d["chat"], sys.argv[1])
assert d["finish"] == "length" and d["usage"]["completion_tokens"] == 10, d
assert ",".join(map(str, d["completion_ids"])) == sys.argv[2], d
assert d["completion_finish"] == "length" and d["completion_usage"]["total_tokens"] == 11, d
assert d["not_found"]["status"] == 404 and d["not_found"]["param"] == "model", d
PY
else
  echo "note: the OpenAI Node client is not installed (scripts/setup.sh installs it into tests/js): not run"
fi

# /metrics: the Prometheus text format, as promtool checks it, counting what happened above.
command -v promtool >/dev/null || fail "promtool is needed (Debian's prometheus; scripts/setup.sh installs it)"
curl -sS -o metrics.txt -w '%{http_code}' "$URL/metrics" >code.txt; status_is 200
promtool check metrics <metrics.txt >promtool.txt 2>&1 || { cat promtool.txt metrics.txt >&2; fail "promtool check metrics"; }
python3 - "$generated_min" <<'PY' || fail "metrics: $(cat metrics.txt)"
import re, sys
m = dict(re.findall(r'^(lockstep_[^ ]+) (\S+)$', open("metrics.txt").read(), re.M))
assert int(m['lockstep_requests_total{outcome="length"}']) >= 10, m
assert int(m['lockstep_requests_total{outcome="rejected"}']) >= 6, m
assert int(m["lockstep_generation_tokens_total"]) >= int(sys.argv[1]), m
assert int(m["lockstep_time_to_first_token_seconds_count"]) >= 10, m
assert int(m['lockstep_time_to_first_token_seconds_bucket{le="+Inf"}']) == int(m["lockstep_time_to_first_token_seconds_count"]), m
assert int(m["lockstep_steps_total"]) > 0 and int(m["lockstep_slots"]) == 2, m
compute = [float(v) for k, v in m.items() if re.fullmatch(r'lockstep_chip_step_seconds_total\{chip="\d+",kind="compute"\}', k)]
assert compute and all(c > 0 for c in compute), m
assert int(m["lockstep_requests_running"]) == 0 and int(m["lockstep_requests_waiting"]) == 0, m
PY

curl -sS -o out.txt -w '%{http_code}' "$URL/health" >code.txt; status_is 200
kill -TERM $pid
set +e; wait $pid; code=$?; set -e
[ "$code" = 143 ] || { cat serve.err >&2; fail "serve exited $code after SIGTERM, want 143"; }
no_run_leftovers "serve"
echo "serve: OK"
