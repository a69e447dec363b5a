// The official `openai` npm SDK against the proxy; run by tests/clients/test_node_openai.py, which copies
// it next to the installed node_modules (ES modules resolve packages from the script's own folder).
// Arguments: the proxy's base URL and a model name. Prints one JSON document of what came back.
import OpenAI from "openai";

const [url, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "sk-test", maxRetries: 0 });
const messages = [{ role: "user", content: "Count." }];

const chat = await client.chat.completions.create({ model, messages, max_tokens: 3 });

const chatDeltas = [];
let finishReason = null;
let usage = null;
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 7, stream: true, stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) {
    chatDeltas.push(choice.delta.content ?? "");
    finishReason = choice.finish_reason ?? finishReason;
  }
}

const completion = await client.completions.create({ model, prompt: "Count:", max_tokens: 5 });
const completionDeltas = [];
for await (const chunk of await client.completions.create({ model, prompt: "Count:", max_tokens: 5, stream: true })) {
  completionDeltas.push(chunk.choices[0]?.text ?? "");
}

let error = null;
try {
  await client.chat.completions.create({ model: "no-such-model", messages });
} catch (exc) {
  error = { name: exc.constructor.name, status: exc.status, code: exc.code, type: exc.type, param: exc.param };
}

process.stdout.write(JSON.stringify({
  chat: { content: chat.choices[0].message.content, finish_reason: chat.choices[0].finish_reason },
  chat_stream: { deltas: chatDeltas, finish_reason: finishReason, usage },
  completion: { text: completion.choices[0].text, finish_reason: completion.choices[0].finish_reason },
  completion_stream_deltas: completionDeltas,
  error,
}));
