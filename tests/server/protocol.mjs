// tests/server/protocol.mjs - bitnet-server's HTTP behaviour on the bitllama-3M model: SSE framing
// (curl), every 400 (bad JSON, fields of the wrong type, max_tokens <= 0, a prompt longer than the
// context, a body over the limit, n != 1) with an OpenAI-style error while another request
// streams undisturbed, 401 with --api-key, the queue-full 503 with Retry-After, a client that
// disconnects mid-stream (its slot is freed), /health, /metrics, and SIGTERM (requests in
// flight finish, new ones get 503, exit status 0). References: bitnet-generate --temp 0.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { requirePrerequisites, startServer, generateText, postJSON, streamText, readEvents, metric, waitFor } from './common.mjs';

requirePrerequisites();

const PROMPT = 'Once upon a time';

function assertOpenAIError(r, status, param) {
  assert.equal(r.status, status, r.text);
  assert.match(r.headers.get('content-type') ?? '', /application\/json/);
  assert.ok(r.json && r.json.error, `an OpenAI-style error body: ${r.text}`);
  assert.equal(typeof r.json.error.message, 'string');
  assert.ok(r.json.error.message.length > 0);
  assert.equal(typeof r.json.error.type, 'string');
  if (param !== undefined) assert.equal(r.json.error.param, param, r.text);
}

test('SSE framing over curl: data events, chunked, text/event-stream, [DONE] last', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  const body = JSON.stringify({ prompt: PROMPT, max_tokens: 20, temperature: 0, stream: true });
  const r = spawnSync('curl', ['-sS', '-N', '-D', '-', '--max-time', '30', '-H', 'Content-Type: application/json', '-d', body,
                               `${srv.url}/v1/completions`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const split = r.stdout.indexOf('\r\n\r\n');
  const head = r.stdout.slice(0, split).toLowerCase();
  const events = r.stdout.slice(split + 4);
  assert.match(head, /^http\/1\.1 200/);
  assert.match(head, /content-type: text\/event-stream/);
  assert.match(head, /transfer-encoding: chunked/);
  assert.match(head, /cache-control: no-cache/);
  const parts = events.split('\n\n');
  assert.equal(parts.pop(), '', 'ends with a blank line');
  assert.equal(parts.at(-1), 'data: [DONE]');
  let text = '';
  for (const p of parts.slice(0, -1)) {
    assert.match(p, /^data: \{.*\}$/s, 'one JSON object per event');
    assert.ok(!p.slice(6).includes('\n'), 'no raw newline inside an event');
    const j = JSON.parse(p.slice(6));
    assert.equal(j.object, 'text_completion');
    text += j.choices[0].text;
  }
  assert.equal(text, generateText(PROMPT, 20).text);
});

test('every bad request gets a 400 with an OpenAI error, and a stream running meanwhile is undisturbed', async (t) => {
  const srv = await startServer(['-c', '64', '--max-body', '4096', '--parallel', '2']);
  t.after(() => srv.stop());
  const ref = generateText(PROMPT, 60);
  const running = streamText(srv.url, '/v1/completions', { prompt: PROMPT, max_tokens: 60, temperature: 0 });

  const C = '/v1/completions', CH = '/v1/chat/completions';
  const cases = [
    [C, '{"prompt": "hi", "max_tokens": 4', undefined],             // truncated JSON
    [C, 'not json at all', undefined],
    [C, '[1, 2, 3]', undefined],                                  // not an object
    [C, { prompt: 'hi', max_tokens: '10' }, 'max_tokens'],
    [C, { prompt: 'hi', max_tokens: 0 }, 'max_tokens'],
    [C, { prompt: 'hi', max_tokens: -5 }, 'max_tokens'],
    [C, { prompt: 'hi', max_tokens: 2.5 }, 'max_tokens'],
    [C, { prompt: 'hi', temperature: 'hot' }, 'temperature'],
    [C, { prompt: 'hi', temperature: -1 }, 'temperature'],
    [C, { prompt: 'hi', top_p: 1.5 }, 'top_p'],
    [C, { prompt: 'hi', top_k: 'many' }, 'top_k'],
    [C, { prompt: 'hi', min_p: [] }, 'min_p'],
    [C, { prompt: 'hi', seed: 'abc' }, 'seed'],
    [C, { prompt: 'hi', stop: 5 }, 'stop'],
    [C, { prompt: 'hi', stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    [C, { prompt: 'hi', stream: 'yes' }, 'stream'],
    [C, { prompt: 'hi', n: 2 }, 'n'],
    [C, { prompt: 'hi', logprobs: true }, 'logprobs'],
    [C, { prompt: 42 }, 'prompt'],
    [C, { prompt: [1, 99999] }, 'prompt[1]'],
    [C, { max_tokens: 4 }, 'prompt'],
    [C, { prompt: 'Once upon a time '.repeat(40) }, 'prompt'],    // longer than the context (-c 64)
    [CH, { messages: 'hi' }, 'messages'],
    [CH, { messages: [] }, 'messages'],
    [CH, { messages: [{ role: 'user', content: 7 }] }, 'messages[0].content'],
    [CH, { messages: [{ role: 'wizard', content: 'hi' }] }, 'messages[0].role'],
    [CH, { messages: [{ role: 'user', content: 'hi' }], max_tokens: 0 }, 'max_tokens'],
    [CH, { messages: [{ role: 'user', content: 'hi' }], max_completion_tokens: -1 }, 'max_completion_tokens'],
    [CH, { messages: [{ role: 'user', content: 'hi' }], logprobs: 'yes' }, 'logprobs'],
    [CH, { messages: [{ role: 'user', content: 'x '.repeat(200) }] }, 'messages'],  // longer than the context
  ];
  for (const [path, body, param] of cases) {
    const r = await postJSON(srv.url, path, body);
    assertOpenAIError(r, 400, param);
  }
  // Bodies over --max-body: with Content-Length, and chunked (no length).
  const big = JSON.stringify({ prompt: 'a'.repeat(5000) });
  const r1 = await postJSON(srv.url, C, big);
  assertOpenAIError(r1, 400);
  assert.match(r1.json.error.message, /larger than 4096 bytes/);
  const chunked = await fetch(srv.url + C, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, duplex: 'half',
    body: new ReadableStream({ start(c) { for (let i = 0; i < 10; ++i) c.enqueue(new TextEncoder().encode(' '.repeat(1000))); c.close(); } }),
  }).catch((e) => e);
  if (!(chunked instanceof Error)) {  // the server may close before the client finished sending
    assert.equal(chunked.status, 400);
    assert.match((await chunked.json()).error.message, /larger than 4096 bytes/);
  }
  const r404 = await postJSON(srv.url, '/v1/embeddings', { input: 'x' });
  assertOpenAIError(r404, 404);

  const done = await running;
  assert.equal(done.text, ref.text, 'the stream that ran during the errors gives its solo output');
  assert.equal(await metric(srv.url, 'bitnet_slots_busy'), 0);
});

test('--api-key: 401 without the key on every endpoint but /health', async (t) => {
  const srv = await startServer(['--api-key', 'sesame']);
  t.after(() => srv.stop());
  const ok = { Authorization: 'Bearer sesame' };
  for (const h of [{}, { Authorization: 'Bearer wrong' }, { Authorization: 'sesame' }]) {
    assertOpenAIError(await postJSON(srv.url, '/v1/completions', { prompt: 'hi', max_tokens: 2 }, h), 401);
    assertOpenAIError(await postJSON(srv.url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] }, h), 401);
    for (const path of ['/v1/models', '/metrics']) {
      const r = await fetch(srv.url + path, { headers: h });
      assert.equal(r.status, 401, path);
      assert.ok((await r.json()).error);
    }
  }
  assert.equal((await fetch(srv.url + '/health')).status, 200);
  assert.equal((await postJSON(srv.url, '/v1/completions', { prompt: 'hi', max_tokens: 2 }, ok)).status, 200);
  assert.equal((await fetch(srv.url + '/v1/models', { headers: ok })).status, 200);
  assert.equal((await fetch(srv.url + '/metrics', { headers: ok })).status, 200);
});

test('queue full: 503 with Retry-After; the accepted requests finish', async (t) => {
  const srv = await startServer(['--parallel', '1', '--queue', '1', '-c', '512']);
  t.after(() => srv.stop());
  const long = { prompt: PROMPT, max_tokens: 300, temperature: 0, ignore_eos: true };
  const a = streamText(srv.url, '/v1/completions', long);
  await waitFor('the first request in its slot', async () => (await metric(srv.url, 'bitnet_slots_busy')) === 1);
  const b = streamText(srv.url, '/v1/completions', long);
  await waitFor('the second request queued', async () => (await metric(srv.url, 'bitnet_queue_depth')) === 1);
  const r = await postJSON(srv.url, '/v1/completions', { prompt: 'hi', max_tokens: 2 });
  assertOpenAIError(r, 503);
  assert.equal(r.headers.get('retry-after'), '1');
  assert.equal(r.json.error.code, 'queue_full');
  const [ra, rb] = await Promise.all([a, b]);
  assert.equal(ra.finish, 'length');
  assert.equal(ra.text, rb.text, 'the queued request ran the same');
  assert.equal(await metric(srv.url, 'bitnet_requests_rejected_total'), 1);
});

test('a client that disconnects mid-stream frees its slot at once', async (t) => {
  const srv = await startServer(['--parallel', '2', '-c', '2048']);
  t.after(() => srv.stop());
  for (const stream of [true, false]) {
    const ac = new AbortController();
    const res = await fetch(srv.url + '/v1/completions', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: ac.signal,
      body: JSON.stringify({ prompt: PROMPT, max_tokens: 2000, temperature: 0, ignore_eos: true, stream }),
    });
    assert.equal(res.status, 200);
    if (stream) {
      const reader = res.body.getReader();
      let got = '';
      while (!got.includes('data: ') || got.split('data: ').length < 4) got += new TextDecoder().decode((await reader.read()).value);
    } else {
      await waitFor('generation under way', async () => (await metric(srv.url, 'bitnet_generated_tokens_total')) > 20);
    }
    assert.equal(await metric(srv.url, 'bitnet_slots_busy'), 1);
    ac.abort();
    await waitFor('the slot freed after the disconnect', async () => (await metric(srv.url, 'bitnet_slots_busy')) === 0, 3000);
  }
  assert.equal(await metric(srv.url, 'bitnet_requests_finished_total{reason="cancelled"}'), 2);
  assert.ok(await metric(srv.url, 'bitnet_generated_tokens_total') < 1000, 'the cancelled requests did not run to 2000 tokens');
  // The freed slots serve new requests normally.
  const r = await postJSON(srv.url, '/v1/completions', { prompt: PROMPT, max_tokens: 20, temperature: 0 });
  assert.equal(r.json.choices[0].text, generateText(PROMPT, 20).text);
});

test('/health, /v1/models and /metrics', async (t) => {
  const srv = await startServer(['--parallel', '3', '--alias', 'tiny']);
  t.after(() => srv.stop());
  const h = await (await fetch(srv.url + '/health')).json();
  assert.deepEqual(h, { status: 'ok', slots: 3, slots_busy: 0, queued: 0 });
  const models = await (await fetch(srv.url + '/v1/models')).json();
  assert.equal(models.object, 'list');
  assert.equal(models.data[0].id, 'tiny');
  assert.equal((await fetch(srv.url + '/v1/models/tiny')).status, 200);
  assert.equal((await fetch(srv.url + '/v1/models/other')).status, 404);
  await postJSON(srv.url, '/v1/completions', { prompt: PROMPT, max_tokens: 5, temperature: 0, ignore_eos: true });
  await postJSON(srv.url, '/v1/completions', { prompt: PROMPT, max_tokens: 0 });
  const res = await fetch(srv.url + '/metrics');
  assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  for (const name of ['bitnet_requests_total', 'bitnet_slots', 'bitnet_slots_busy', 'bitnet_queue_depth',
                      'bitnet_prompt_tokens_total', 'bitnet_generated_tokens_total', 'bitnet_tokens_per_second',
                      'bitnet_batch_size', 'bitnet_steps_total'])
    assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'));
  assert.match(text, /^bitnet_requests_total\{endpoint="\/v1\/completions",code="200"\} 1$/m);
  assert.match(text, /^bitnet_requests_total\{endpoint="\/v1\/completions",code="400"\} 1$/m);
  assert.match(text, /^bitnet_generated_tokens_total 5$/m);
  assert.match(text, /^bitnet_requests_finished_total\{reason="length"\} 1$/m);
  assert.match(text, /^bitnet_batch_size_bucket\{le="\+Inf"\} (\d+)$/m);
  assert.equal(/^bitnet_batch_size_count (\d+)$/m.exec(text)[1], /^bitnet_batch_size_bucket\{le="\+Inf"\} (\d+)$/m.exec(text)[1]);
  assert.equal(Number(/^bitnet_prompt_tokens_total (\d+)$/m.exec(text)[1]), generateText(PROMPT, 1).promptTokens);
});

test('SIGTERM: the request in flight finishes, new ones get 503, exit status 0', async (t) => {
  // A generous --shutdown-timeout: on a busy machine (CI running other tests) the request may need
  // seconds; the drain must wait for it, not cut it.
  const srv = await startServer(['-c', '512', '--shutdown-timeout', '120']);
  t.after(() => srv.stop());
  const ref = generateText(PROMPT, 120);
  const running = streamText(srv.url, '/v1/completions', { prompt: PROMPT, max_tokens: 120, temperature: 0, ignore_eos: true });
  await waitFor('generation under way', async () => (await metric(srv.url, 'bitnet_generated_tokens_total')) > 5);
  srv.proc.kill('SIGTERM');
  await waitFor('draining', async () => /not accepting requests/.test(srv.log()));
  const refused = await postJSON(srv.url, '/v1/completions', { prompt: 'hi', max_tokens: 2 }).catch((e) => e);
  if (!(refused instanceof Error)) assertOpenAIError(refused, 503);  // or refused at connect, if it already stopped
  const done = await running;
  assert.equal(done.text, ref.text);
  const { code, signal } = await srv.exited;
  assert.equal(signal, null);
  assert.equal(code, 0, srv.log());
});

test('a port in use: exit status 1 with a message', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  const r = spawnSync(process.env.BITNET_SERVER, ['-m', process.env.BITNET_TEST_MODEL, '--port', String(srv.port), '-t', '1'],
                      { encoding: 'utf8', timeout: 60000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`error: cannot listen on 127\\.0\\.0\\.1:${srv.port}`));
});
