#!/usr/bin/env bash
# lockstep run --text / --chat over a distributed run (issue #23): with --transport inproc (worker
# threads) and ipc (lockstep-worker processes) the prompt goes through the model folder's
# tokenizer, the text streams to stdout and equals the in-process run's, byte for byte; --json
# gives the same tokens, text and finish_reason; a model whose eos_token_id is one of the greedy
# tokens ends there (finish_reason "stop", the text without it) as in one process, and
# --ignore-eos runs past it. Bad combinations are refused naming the flag.
#   tests/run_text_test.sh BUILD/cli/lockstep   (lockstep-worker is found beside it)
set -euo pipefail
L=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$(dirname "$0")/lib.sh"
private_tmp run-text

# The model folder: tiny-llama's config and a byte-level tokenizer (ids = bytes) with a chat
# template, so the tokenizer is found there without --tokenizer.
M=$TMPDIR/model
mkdir -p "$M"
cp "$ROOT/examples/models/tiny-llama/config.json" "$M/"
byte_tokenizer "$M/tokenizer.json"
cat >"$M/tokenizer_config.json" <<'JSON'
{"chat_template": "{% for m in messages %}<{{ m.role }}>{{ m['content'] | trim }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"}
JSON

same() {  # same NAME "TRANSPORTS" ARGS...: stdout and --json in one process and over each
  local name=$1 transports=$2; shift 2
  expect_exit 0 "$L" run --model "$M" --seed 1 "$@"
  mv out.txt "$name.ref.txt"
  expect_exit 0 "$L" run --model "$M" --seed 1 "$@" --json
  mv out.txt "$name.ref.json"
  local t
  for t in $transports; do
    expect_exit 0 "$L" run --model "$M" --seed 1 "$@" --transport $t --tp 1 --pp 2
    cmp -s out.txt "$name.ref.txt" ||
      fail "$name over $t: text '$(cat out.txt)', in one process '$(cat "$name.ref.txt")'"
    expect_exit 0 "$L" --json run --model "$M" --seed 1 "$@" --transport $t --tp 1 --pp 2
    python3 - "$name.ref.json" <<'PY' || fail "$name over $t: --json differs (above)"
import json, sys
got, ref = json.load(open("out.txt")), json.load(open(sys.argv[1]))
for k in ("tokens", "text", "finish_reason"):
    assert got[k] == ref[k], (k, got[k], ref[k])
PY
  done
}

same plain "inproc ipc" --text $'h\u00e9llo' --max-new 12
same chat ipc --text " hi " --chat --system S --max-new 10
# An end-of-sequence id the greedy run meets: the run ends there in every mode.
eos=$(python3 -c 'import json; print(json.load(open("plain.ref.json"))["tokens"][4])')
python3 - "$M/config.json" "$eos" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["eos_token_id"] = int(sys.argv[2])
json.dump(c, open(sys.argv[1], "w"))
PY
same eos "inproc ipc" --text $'h\u00e9llo' --max-new 12
python3 - <<'PY' || fail "eos: the in-process run did not stop at the EOS id"
import json
r = json.load(open("eos.ref.json"))
assert r["finish_reason"] == "stop" and len(r["tokens"]) <= 5, r
PY
same ignore inproc --text $'h\u00e9llo' --max-new 12 --ignore-eos
python3 -c 'import json, sys; r = json.load(open("ignore.ref.json")); sys.exit(len(r["tokens"]) != 12)' ||
  fail "--ignore-eos: $(cat ignore.ref.json)"

# Refused, naming the flag.
expect_exit 2 "$L" run --model "$M" --seed 1 --transport inproc --text hi --prompt 1,2
err_has "give exactly one of --prompt 1,2,3, --prompts FILE or --text"
expect_exit 2 "$L" run --model "$M" --seed 1 --transport inproc --prompt 1,2 --chat
err_has "--chat and --system go with --text"
expect_exit 2 "$L" run --model "$ROOT/examples/models/tiny-llama" --seed 1 --transport inproc --text hi
err_has "--text needs a tokenizer"
no_run_leftovers "run --text"
echo "run_text: OK"
