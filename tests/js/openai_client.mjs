// The official OpenAI Node client against `lockstep serve` (tests/serve_test.sh): a streaming
// chat completion and a plain completion, greedy; prints one JSON object with what came back.
//   node openai_client.mjs BASE_URL MODEL
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60000 });

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "system", content: "S" }, { role: "user", content: " hi " }],
  max_tokens: 10,
  temperature: 0,
  stream: true,
  stream_options: { include_usage: true },
});
let chat = "";
let finish = null;
let usage = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    chat += c.delta?.content ?? "";
    if (c.finish_reason) finish = c.finish_reason;
  }
}
const completion = await client.completions.create({
  model,
  prompt: [1, 2, 3],
  max_tokens: 8,
  temperature: 0,
});
let notFound = null;
try {
  await client.completions.create({ model: "no-such-model", prompt: [1] });
} catch (e) {
  notFound = { status: e.status, param: e.param ?? e.error?.param ?? null };
}
console.log(JSON.stringify({
  chat, finish, usage,
  completion_ids: completion.choices[0].token_ids,
  completion_finish: completion.choices[0].finish_reason,
  completion_usage: completion.usage,
  not_found: notFound,
}));
