// The reference the tokenizer tests compare Lockstep against: Hugging Face's JavaScript
// tokenizers (@huggingface/tokenizers, the tokenizer of transformers.js) and Jinja
// (@huggingface/jinja). Test-only; installed by scripts/setup.sh into tests/js/node_modules.
//
//   node reference.mjs encode DIR INPUT.jsonl [--add-special-tokens]   -> {"ids": [[...], ...]}
//   node reference.mjs decode DIR IDS.json [--skip-special-tokens]     -> {"texts": [...]}
//       (IDS.json: {"ids": [[...], ...]}; decoded without clean-up and with the config's default)
//   node reference.mjs chat DIR CASES.json   -> {"rendered": [...]}
//       (CASES.json: [{"messages": [...], "add_generation_prompt": bool, ...extra context}])
//   node reference.mjs speed DIR FILE SECONDS  -> {"bytes_per_s": ...} (encode throughput)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";

const [mode, dir, input, ...flags] = process.argv.slice(2);
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

if (mode === "encode") {
  const tokenizer = new Tokenizer(tokenizerJson, config);
  const add = flags.includes("--add-special-tokens");
  const ids = readJsonl(input).map((text) => tokenizer.encode(text, { add_special_tokens: add }).ids);
  process.stdout.write(JSON.stringify({ ids }) + "\n");
} else if (mode === "decode") {
  const tokenizer = new Tokenizer(tokenizerJson, config);
  const skip = flags.includes("--skip-special-tokens");
  const all = JSON.parse(readFileSync(input, "utf8")).ids;
  const texts = all.map((ids) =>
    ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens: skip }),
  );
  process.stdout.write(JSON.stringify({ texts }) + "\n");
} else if (mode === "chat") {
  const source = config.chat_template;
  const template = new Template(typeof source === "string" ? source : source[0].template);
  const token = (t) => (t && typeof t === "object" ? t.content : t);
  const cases = JSON.parse(readFileSync(input, "utf8"));
  const rendered = cases.map((c) =>
    template.render({
      bos_token: token(config.bos_token) ?? "",
      eos_token: token(config.eos_token) ?? "",
      unk_token: token(config.unk_token) ?? "",
      pad_token: token(config.pad_token) ?? "",
      ...c,
    }),
  );
  process.stdout.write(JSON.stringify({ rendered }) + "\n");
} else if (mode === "speed") {
  const tokenizer = new Tokenizer(tokenizerJson, config);
  const text = readFileSync(input, "utf8");
  const lines = text.split("\n");
  const seconds = Number(flags[0] ?? 2);
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
  process.stderr.write("usage: node reference.mjs encode|decode|chat|speed DIR INPUT [flags]\n");
  process.exit(2);
}
