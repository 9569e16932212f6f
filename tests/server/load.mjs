// tests/server/load.mjs - bitnet-server under concurrency, on the bitllama-3M model.
//   1. Eight clients at once (chat and completions, streamed and not, prompts of different
//      lengths, different max_tokens so that sequences join and leave the batch mid-way, prompts
//      prefilled in chunks of 8 tokens between decode steps): each greedy output equals its solo
//      run by bitnet-generate --temp 0 (one sequence, session::eval), and /metrics shows steps
//      that batched several sequences.
//   2. A bounded load test: a fixed number of requests from 16 workers against 4 slots and a
//      queue, at most 60 s: no request fails, and afterwards no slot or queue entry is left.
import test from 'node:test';
import assert from 'node:assert/strict';
import { requirePrerequisites, startServer, generateText, chatText, postJSON, streamText, metric } from './common.mjs';

requirePrerequisites();

test('eight clients at once: each greedy output equals its solo run', async (t) => {
  const srv = await startServer(['--parallel', '8', '-b', '8', '-c', '256']);
  t.after(() => srv.stop());
  const prompts = ['Once upon a time', 'The little bird', 'Lily and Ben went to the park to play with their ball',
                   'One day', 'There was a big red truck that liked to drive fast on the road near the farm',
                   'Tom had a dog', 'The sun', 'Sara found a shiny stone in the garden and showed it to her mom'];
  const jobs = prompts.map((p, i) => ({ prompt: p, n: 24 + 9 * i, chat: i % 3 === 2, stream: i % 2 === 0 }));
  const refs = jobs.map((j) => (j.chat ? chatText(j.prompt, j.n) : generateText(j.prompt, j.n).text));
  const run = (j) => {
    const path = j.chat ? '/v1/chat/completions' : '/v1/completions';
    const body = j.chat ? { messages: [{ role: 'user', content: j.prompt }], max_tokens: j.n, temperature: 0 }
                        : { prompt: j.prompt, max_tokens: j.n, temperature: 0 };
    if (j.stream) return streamText(srv.url, path, body).then((r) => r.text);
    return postJSON(srv.url, path, body).then((r) => {
      assert.equal(r.status, 200, r.text);
      return j.chat ? r.json.choices[0].message.content : r.json.choices[0].text;
    });
  };
  const got = await Promise.all(jobs.map(run));
  for (let i = 0; i < jobs.length; ++i) assert.equal(got[i], refs[i], `client ${i} (${JSON.stringify(jobs[i])})`);
  const res = await fetch(srv.url + '/metrics');
  const text = await res.text();
  const le = (k) => Number(new RegExp(`^bitnet_batch_size_bucket\\{le="${k}"\\} (\\d+)$`, 'm').exec(text)[1]);
  assert.ok(le('\\+Inf') - le('4') > 0, `some steps batched more than 4 sequences:\n${text}`);
  assert.equal(await metric(srv.url, 'bitnet_slots_busy'), 0);
});

test('bounded load: every request succeeds, no slot leaks', async (t) => {
  const srv = await startServer(['--parallel', '4', '--queue', '64', '-c', '256', '-q']);
  t.after(() => srv.stop());
  const TOTAL = 64, WORKERS = 16;
  const deadline = AbortSignal.timeout(60000);
  let next = 0;
  const failures = [];
  const t0 = Date.now();
  const worker = async (w) => {
    for (let i = next++; i < TOTAL; i = next++) {
      const chat = i % 2 === 1, stream = i % 4 < 2;
      const path = chat ? '/v1/chat/completions' : '/v1/completions';
      const body = { max_tokens: 8 + (i % 5) * 6, temperature: i % 3 === 0 ? 0 : 0.8, seed: i,
                     ...(chat ? { messages: [{ role: 'user', content: `Tell story ${i}` }] } : { prompt: `Story ${i}:` }) };
      try {
        if (stream) {
          const r = await streamText(srv.url, path, body);
          if (!['stop', 'length'].includes(r.finish)) failures.push(`${i}: finish ${r.finish}`);
        } else {
          const res = await fetch(srv.url + path, { method: 'POST', body: JSON.stringify(body), signal: deadline,
                                                    headers: { 'Content-Type': 'application/json' } });
          const j = await res.json();
          if (res.status !== 200 || !['stop', 'length'].includes(j.choices?.[0]?.finish_reason))
            failures.push(`${i}: ${res.status} ${JSON.stringify(j)}`);
        }
      } catch (e) {
        failures.push(`${i} (worker ${w}): ${e.message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
  const seconds = (Date.now() - t0) / 1000;
  assert.deepEqual(failures, []);
  assert.ok(seconds < 60, `${seconds} s`);
  assert.equal(await metric(srv.url, 'bitnet_slots_busy'), 0);
  assert.equal(await metric(srv.url, 'bitnet_queue_depth'), 0);
  const finished = (await metric(srv.url, 'bitnet_requests_finished_total{reason="stop"}')) +
                   (await metric(srv.url, 'bitnet_requests_finished_total{reason="length"}'));
  assert.equal(finished, TOTAL);
  assert.equal(await metric(srv.url, 'bitnet_requests_finished_total{reason="cancelled"}'), 0);
  console.log(`# load: ${TOTAL} requests from ${WORKERS} workers in ${seconds.toFixed(1)} s`);
});
