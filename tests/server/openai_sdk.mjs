// tests/server/openai_sdk.mjs - bitnet-server driven by the official OpenAI SDK for Node (npm
// `openai`, pinned and installed by scripts/fetch_openai_sdk.sh), on the bitllama-3M model.
// Reference: bitnet-generate --temp 0 on the same model and prompt (a separate program running
// one sequence through session::eval), for completions and for chat (--chat: the runner's
// chat formatting of the same message); the texts must be equal, streamed or not.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { requirePrerequisites, startServer, generateText, chatText } from './common.mjs';

requirePrerequisites();
const sdkDir = process.env.BITNET_OPENAI_SDK_DIR;
let OpenAI;
try {
  const require = createRequire(join(sdkDir ?? '/nonexistent', 'x.js'));
  const main = require.resolve('openai');
  const mjs = main.replace(/index\.js$/, 'index.mjs');
  ({ default: OpenAI } = await import(pathToFileURL(existsSync(mjs) ? mjs : main).href));
} catch (e) {
  console.log(`SKIP: the OpenAI SDK is not installed in ${sdkDir}/node_modules (scripts/fetch_openai_sdk.sh; offline?): ${e.message}`);
  process.exit(0);
}

const srv = await startServer(['--parallel', '4', '-c', '512']);
const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
test.after(() => srv.stop());

const PROMPT = 'Once upon a time, there was a little dog';
const N = 48;

test('models.list names the model', async () => {
  const page = await client.models.list();
  const ids = page.data.map((m) => m.id);
  assert.deepEqual(ids, ['bitllama-3M.gguf']);
});

test('completions.create equals bitnet-generate --temp 0', async () => {
  const ref = generateText(PROMPT, N);
  const r = await client.completions.create({ model: 'bitllama-3M.gguf', prompt: PROMPT, max_tokens: N, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].text, ref.text);
  assert.equal(r.choices[0].finish_reason, ref.stop === 'eos' ? 'stop' : 'length');
  assert.equal(r.usage.prompt_tokens, ref.promptTokens);
  assert.equal(r.usage.completion_tokens, ref.completionTokens);
  assert.equal(r.usage.total_tokens, ref.promptTokens + ref.completionTokens);
});

test('completions.create stream: the chunks add up to the same text', async () => {
  const ref = generateText(PROMPT, N);
  const stream = await client.completions.create({ model: 'x', prompt: PROMPT, max_tokens: N, temperature: 0, stream: true });
  let text = '';
  let finish = null;
  let chunks = 0;
  for await (const c of stream) {
    ++chunks;
    text += c.choices[0].text;
    if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
  }
  assert.equal(text, ref.text);
  assert.equal(finish, ref.stop === 'eos' ? 'stop' : 'length');
  assert.ok(chunks > 10, `${chunks} chunks: the text was streamed, not sent at once`);
});

for (const system of ['', 'You are a storyteller.']) {
  const label = system ? ' with a system message' : '';
  test(`chat.completions.create${label} equals bitnet-generate --chat --temp 0`, async () => {
    const msg = 'Tell me a story about a cat.';
    const ref = chatText(msg, N, system);
    const messages = [...(system ? [{ role: 'system', content: system }] : []), { role: 'user', content: msg }];
    const r = await client.chat.completions.create({ model: 'x', messages, max_tokens: N, temperature: 0 });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content, ref);
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));

    const stream = await client.chat.completions.create({ model: 'x', messages, max_tokens: N, temperature: 0, stream: true,
                                                          stream_options: { include_usage: true } });
    let text = '';
    let role = null;
    let usage = null;
    for await (const c of stream) {
      if (c.usage) usage = c.usage;
      for (const ch of c.choices) {
        if (ch.delta.role) role = ch.delta.role;
        text += ch.delta.content ?? '';
      }
    }
    assert.equal(role, 'assistant');
    assert.equal(text, ref);
    assert.deepEqual(usage, r.usage);
  });
}

test('stop strings end the text before them, finish_reason stop', async () => {
  const ref = generateText(PROMPT, N);
  const stop = ref.text.slice(20, 26);
  const want = ref.text.slice(0, ref.text.indexOf(stop));
  const r = await client.completions.create({ model: 'x', prompt: PROMPT, max_tokens: N, temperature: 0, stop: [stop, 'zzzz'] });
  assert.equal(r.choices[0].text, want);
  assert.equal(r.choices[0].finish_reason, 'stop');
  const s = await client.completions.create({ model: 'x', prompt: PROMPT, max_tokens: N, temperature: 0, stop, stream: true });
  let text = '';
  for await (const c of s) text += c.choices[0].text;
  assert.equal(text, want);
});

test('logprobs: greedy tokens are their own top-1, the tokens spell the text', async () => {
  const r = await client.completions.create({ model: 'x', prompt: PROMPT, max_tokens: 16, temperature: 0, logprobs: 3 });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, r.usage.completion_tokens);
  assert.ok(!lp.tokens.some((t) => t.startsWith('bytes:')), 'the tiny model writes ASCII');
  assert.equal(lp.tokens.join(''), r.choices[0].text);
  let offset = 0;
  for (let i = 0; i < lp.tokens.length; ++i) {
    const top = Object.entries(lp.top_logprobs[i]).sort((a, b) => b[1] - a[1]);
    assert.ok(top.length >= 1 && top.length <= 3);
    assert.equal(top[0][1], lp.token_logprobs[i], `token ${i}: greedy picks the most likely token`);
    assert.ok(lp.token_logprobs[i] <= 0);
    assert.ok(top.reduce((s, [, v]) => s + Math.exp(v), 0) <= 1 + 1e-5);
    assert.equal(lp.text_offset[i], offset);
    offset += lp.tokens[i].length;
  }
  const c = await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8,
                                                   temperature: 0, logprobs: true, top_logprobs: 2 });
  const content = c.choices[0].logprobs.content;
  assert.equal(content.length, c.usage.completion_tokens);
  for (const t of content) {
    assert.equal(t.top_logprobs.length, 2);
    assert.equal(t.top_logprobs[0].logprob, t.logprob);
    assert.deepEqual(t.bytes, [...Buffer.from(t.token, 'utf8')]);
  }
});

test('sampling with a seed repeats; the SDK raises BadRequestError for max_tokens 0', async () => {
  const req = { model: 'x', prompt: PROMPT, max_tokens: 24, temperature: 0.9, top_p: 0.95, seed: 1234 };
  const a = await client.completions.create(req);
  const b = await client.completions.create(req);
  assert.equal(a.choices[0].text, b.choices[0].text);
  await assert.rejects(client.completions.create({ ...req, max_tokens: 0 }), (e) => {
    assert.equal(e.status, 400);
    assert.match(e.message, /max_tokens/);
    return true;
  });
});
