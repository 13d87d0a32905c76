// The reference the tokenizer tests compare Lockstep against: Hugging Face's JavaScript
// tokenizers (@huggingface/tokenizers, the tokenizer of transformers.js) and Jinja
// (@huggingface/jinja). Test-only; installed by scripts/setup.sh into tests/js/node_modules.
//
//   node reference.mjs check NAME DIR CORPUS.jsonl CHATS.json TEMPLATES.json  -> one JSON object:
//       encode / encode_special: the ids of every corpus line, without and with special tokens;
//       decode / decode_skip: encode_special's ids decoded (the config's clean-up), plainly and
//       skipping special tokens; chat: every conversation of CHATS.json rendered by the
//       tokenizer's own chat template (when its config has one) and by each template of
//       TEMPLATES.json whose "tokenizer" is NAME, each {"template", "case", "text"} or
//       {"template", "case", "error"}; chat_ids: each rendered text encoded without special
//       tokens. One process per tokenizer: its 9-11 MB of JSON is parsed once.
//   node reference.mjs speed DIR FILE SECONDS  -> {"bytes_per_s": ...} (encode throughput)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";

const argv = process.argv.slice(2);
const mode = argv[0];
const dir = mode === "check" ? argv[2] : argv[1];
const tokenizerJson = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
let config = {};
try {
  config = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
} catch {}

function readJsonl(path) {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line.trim().length > 0)
    .map((line) => JSON.parse(line));
}

// The variables transformers passes a chat template: the special tokens the config names.
function specialTokens(source) {
  const token = (t) => (t && typeof t === "object" ? t.content : t);
  const out = {};
  for (const name of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
    const value = token(source[name]);
    if (typeof value === "string") out[name] = value;
  }
  return out;
}

if (mode === "check") {
  const [, name, , corpusPath, chatsPath, templatesPath] = argv;
  const tokenizer = new Tokenizer(tokenizerJson, config);
  const lines = readJsonl(corpusPath);
  const encode = lines.map((text) => tokenizer.encode(text, { add_special_tokens: false }).ids);
  const encode_special = lines.map((text) => tokenizer.encode(text, { add_special_tokens: true }).ids);
  const decode = encode_special.map((ids) => (ids.length === 0 ? "" : tokenizer.decode(ids)));
  const decode_skip = encode_special.map((ids) =>
    ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens: true }),
  );
  const templates = [];
  if (config.chat_template) {
    const source = config.chat_template;
    templates.push({ name: "own", source: typeof source === "string" ? source : source[0].template, tokens: specialTokens(config) });
  }
  for (const t of JSON.parse(readFileSync(templatesPath, "utf8"))) {
    if (t.tokenizer === name) templates.push({ name: t.name, source: t.template, tokens: specialTokens(t) });
  }
  const cases = JSON.parse(readFileSync(chatsPath, "utf8"));
  const chat = [];
  const chat_ids = [];
  for (const t of templates) {
    const template = new Template(t.source);
    cases.forEach((c, i) => {
      try {
        const text = template.render({ ...t.tokens, ...c });
        chat.push({ template: t.name, case: i, text });
        chat_ids.push(tokenizer.encode(text, { add_special_tokens: false }).ids);
      } catch (e) {
        chat.push({ template: t.name, case: i, error: e.message });
      }
    });
  }
  process.stdout.write(JSON.stringify({ encode, encode_special, decode, decode_skip, chat, chat_ids }) + "\n");
} else if (mode === "speed") {
  const tokenizer = new Tokenizer(tokenizerJson, config);
  const text = readFileSync(argv[2], "utf8");
  const lines = text.split("\n");
  const seconds = Number(argv[3] ?? 2);
  const bytes = Buffer.byteLength(text, "utf8");
  let done = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  do {
    for (const line of lines) tokenizer.encode(line, { add_special_tokens: false });
    done += bytes;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  } while (elapsed < seconds);
  process.stdout.write(JSON.stringify({ bytes_per_s: done / elapsed, seconds: elapsed }) + "\n");
} else {
  process.stderr.write("usage: node reference.mjs check NAME DIR CORPUS CHATS TEMPLATES | speed DIR FILE SECONDS\n");
  process.exit(2);
}
