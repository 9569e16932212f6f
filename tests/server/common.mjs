// tests/server/common.mjs - helpers shared by the bitnet-server tests (loopback only).
//
// Paths come from the environment CTest sets (tests/server.cmake): BITNET_SERVER, BITNET_GENERATE,
// BITNET_TEST_MODEL. Every server runs on 127.0.0.1 with --port 0 (a free port, read from its
// "listening on" log line) and is killed when the test process exits.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const SERVER = process.env.BITNET_SERVER;
export const GENERATE = process.env.BITNET_GENERATE;
export const MODEL = process.env.BITNET_TEST_MODEL;

// Prints the reason and exits 0 with "SKIP:" (CTest's SKIP_REGULAR_EXPRESSION) when a
// prerequisite is missing; a missing binary is an error, not a skip.
export function requirePrerequisites() {
  for (const [name, v] of [['BITNET_SERVER', SERVER], ['BITNET_GENERATE', GENERATE], ['BITNET_TEST_MODEL', MODEL]])
    if (!v) throw new Error(`${name} is not set (run through ctest)`);
  for (const p of [SERVER, GENERATE]) if (!existsSync(p)) throw new Error(`${p} does not exist`);
  if (!existsSync(MODEL)) {
    console.log(`SKIP: the test model ${MODEL} was not made (staged data ../shared/data/bitllama2c missing?)`);
    process.exit(0);
  }
}

const running = new Set();
process.on('exit', () => { for (const p of running) try { p.kill('SIGKILL'); } catch {} });

// Starts bitnet-server on a free port; resolves once it listens.
export function startServer(args = [], { env } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(SERVER, ['-m', MODEL, '--port', '0', '-t', '2', ...args],
                       { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    running.add(proc);
    let log = '';
    let port = 0;
    const exited = new Promise((res) => proc.on('exit', (code, signal) => { running.delete(proc); res({ code, signal }); }));
    const timer = setTimeout(() => reject(new Error(`bitnet-server did not start within 60 s:\n${log}`)), 60000);
    proc.stdout.on('data', (d) => { log += `[stdout] ${d}`; });
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m && !port) {
        port = Number(m[1]);
        clearTimeout(timer);
        resolve({
          port, proc, exited,
          url: `http://127.0.0.1:${port}`,
          log: () => log,
          async stop() {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
            await exited;
          },
        });
      }
    });
    proc.on('exit', (code) => { if (!port) { clearTimeout(timer); reject(new Error(`bitnet-server exited (${code}) before listening:\n${log}`)); } });
  });
}

// bitnet-generate --temp 0 on the same model: the reference text of a completion.
export function generateText(prompt, n) {
  const r = spawnSync(GENERATE, ['-m', MODEL, '-p', prompt, '-n', String(n), '--temp', '0', '--json', '-t', '1'],
                      { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) throw new Error(`bitnet-generate failed (${r.status}): ${r.stderr}`);
  const j = JSON.parse(r.stdout);
  return { text: j.text, promptTokens: j.prompt_ids.length, completionTokens: j.generated_ids.length, stop: j.stop };
}

// bitnet-generate --chat --temp 0 with one user message: the reference reply of a chat.
export function chatText(message, n, system = '') {
  const args = ['-m', MODEL, '--chat', '-p', message, '-n', String(n), '--temp', '0', '-t', '1'];
  if (system) args.push('--system', system);
  const r = spawnSync(GENERATE, args, { encoding: 'utf8', input: '', timeout: 60000 });
  if (r.status !== 0) throw new Error(`bitnet-generate --chat failed (${r.status}): ${r.stderr}`);
  if (!r.stdout.endsWith('\n')) throw new Error(`unexpected chat output: ${JSON.stringify(r.stdout)}`);
  return r.stdout.slice(0, -1);  // the reply, then the newline the CLI prints after it
}

export async function postJSON(base, path, body, headers = {}) {
  const res = await fetch(base + path, {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(60000),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch {}
  return { status: res.status, headers: res.headers, text, json };
}

// Reads an SSE response to the end: the data payloads in order.
export async function readEvents(res) {
  const body = await res.text();
  const events = body.split('\n\n');
  if (events.pop() !== '') throw new Error(`the stream does not end with a blank line: ${JSON.stringify(body.slice(-80))}`);
  return events.map((e) => {
    if (!e.startsWith('data: ')) throw new Error(`not a data event: ${JSON.stringify(e)}`);
    return e.slice(6);
  });
}

// Streams a completion or chat request; returns the concatenated text, finish reason and events.
export async function streamText(base, path, body, headers = {}) {
  const res = await fetch(base + path, {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ ...body, stream: true }), signal: AbortSignal.timeout(60000),
  });
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  const data = await readEvents(res);
  if (data.at(-1) !== '[DONE]') throw new Error(`the stream does not end with [DONE]: ${data.at(-1)}`);
  let text = '';
  let finish = null;
  for (const d of data.slice(0, -1)) {
    const j = JSON.parse(d);
    if (j.error) throw new Error(`error event: ${d}`);
    for (const c of j.choices) {
      text += c.delta ? (c.delta.content ?? '') : c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { text, finish, events: data };
}

// One metric's value from /metrics (the first line whose name and labels match).
export async function metric(base, name, headers = {}) {
  const res = await fetch(base + '/metrics', { headers, signal: AbortSignal.timeout(10000) });
  const text = await res.text();
  for (const line of text.split('\n'))
    if (line.startsWith(name + ' ')) return Number(line.slice(name.length + 1));
  return undefined;
}

export async function waitFor(what, cond, ms = 10000) {
  const t0 = Date.now();
  for (;;) {
    if (await cond()) return;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
