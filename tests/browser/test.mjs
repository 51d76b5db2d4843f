// Browser tests for the demo page (examples/web) and its client module
// (clients/js/index.js). Started by run.sh, which sets up ssehub and
// nginx (scripts/demo.sh) and a second origin; prints TAP and exits 1 when a
// test failed.
//
// Environment (set by run.sh):
//   SSEHUB_STATE   demo state directory: tokens, pid file, socket, logs
//   BASE_URL       the demo page behind nginx, e.g. http://127.0.0.1:8080
//   OTHER_ORIGIN   a static server of examples/web on another port, an origin
//                  nginx's CORS allowlist holds
//   DENIED_ORIGIN  the same server under a name the allowlist does not hold
//   ARTIFACTS      where the screenshots go
//   CHROMIUM       the browser (/usr/bin/chromium)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const { SSEParser, SSEClient } = await import(path.join(here, '../../clients/js/index.js'));

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(name + ' is not set (start the tests with tests/browser/run.sh)');
  return v;
};

// ---- TAP -----------------------------------------------------------------

let count = 0;
let failures = 0;

async function test(name, fn) {
  count++;
  try {
    await fn();
    console.log(`ok ${count} - ${name}`);
  } catch (e) {
    failures++;
    console.log(`not ok ${count} - ${name}`);
    String(e && e.stack ? e.stack : e).split('\n').slice(0, 12).forEach((l) => console.log('#   ' + l));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeoutMs = 10000, stepMs = 100) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
    await sleep(stepMs);
  }
}

// ---- the stream parser and the client, in Node -----------------------------

function parseAll(chunks) {
  const events = [];
  const retries = [];
  const p = new SSEParser((e) => events.push(e), (ms) => retries.push(ms));
  chunks.forEach((c) => p.push(c));
  return { events, retries, lastEventId: p.lastEventId };
}

// Every line ending, a comment, a BOM, multi-byte UTF-8, multi-line data.
const STREAM = '\uFEFFretry: 3000\r\n\r\n' +
  'event: connected\r\ndata: {"client_id":"c1"}\r\n\r\n' +
  ': keep-alive comment\n' +
  'id: 42-a\nevent: notification\ndata: {"title":"h\u00e9llo \u20ac \u{1F600}"}\n\n' +
  'id: 42-b\rdata: first line\rdata:second line\rdata:  two spaces\r\r' +
  'event: ping\ndata: {"timestamp":1}\n\n' +
  'data: unfinished';  // no blank line: never dispatched
const EXPECTED = [
  { type: 'connected', data: '{"client_id":"c1"}', lastEventId: '' },
  { type: 'notification', data: '{"title":"h\u00e9llo \u20ac \u{1F600}"}', lastEventId: '42-a' },
  { type: 'message', data: 'first line\nsecond line\n two spaces', lastEventId: '42-b' },
  { type: 'ping', data: '{"timestamp":1}', lastEventId: '42-b' },
];

await test('parser: events, ids, retry, multi-line data, every line ending, split at every byte', async () => {
  assert.deepEqual(parseAll([STREAM]).events, EXPECTED);
  assert.deepEqual(parseAll([STREAM]).retries, [3000]);
  // One character at a time: CRLF split between two reads, and so on.
  assert.deepEqual(parseAll([...STREAM]).events, EXPECTED);
  // Bytes cut at every offset, decoded the way the fetch client decodes them
  // (a UTF-8 sequence split across reads stays whole).
  const bytes = new TextEncoder().encode(STREAM);
  for (let cut = 1; cut < bytes.length; cut++) {
    const dec = new TextDecoder();
    const chunks = [dec.decode(bytes.slice(0, cut), { stream: true }), dec.decode(bytes.slice(cut), { stream: true }), dec.decode()];
    assert.deepEqual(parseAll(chunks).events, EXPECTED, 'split at byte ' + cut);
  }
});

await test('parser: field rules of the WHATWG spec', async () => {
  const r = parseAll(['id: 1\ndata: a\n\n',
    'id: bad\0id\ndata: b\n\n',      // an id with NUL is ignored
    'retry: 12x\nretry: 250\n',       // only digits count
    'event: only-event\n\n',          // no data: not dispatched...
    'id: 7\n\n',                      // ...but an id alone still moves lastEventId
    'data\n\n',                       // a field without colon: empty value
    'data:no space\nfoo: bar\n\n',    // unknown fields are ignored
  ]);
  assert.deepEqual(r.events.map((e) => [e.type, e.data, e.lastEventId]), [
    ['message', 'a', '1'], ['message', 'b', '1'], ['message', '', '7'], ['message', 'no space', '7']]);
  assert.deepEqual(r.retries, [250]);
  assert.equal(r.lastEventId, '7');
});

// A fetch() stand-in that answers from a script, and records each call.
function scriptedFetch(answers) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ t: Date.now(), url, headers: Object.assign({}, init.headers) });
    const a = answers.shift();
    if (!a) return new Promise(() => {});   // hang: the test is over
    if (a.stream !== undefined) {
      return new Response(a.stream, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
    }
    return new Response(JSON.stringify({ success: false, error: { code: a.code, message: 'm' } }),
                        { status: a.status, headers: { 'Content-Type': 'application/json' } });
  };
  return { fn, calls };
}

await test('client (fetch): retry: honoured, then exponential backoff with a cap, Last-Event-ID header, 401 stops', async () => {
  const { fn, calls } = scriptedFetch([
    { stream: 'retry: 30\n\nid: m-1\nevent: note\ndata: {"n":1}\n\n' },  // 200, then the stream ends
    { status: 502, code: 'x' }, { status: 503, code: 'shutting_down' }, { status: 502, code: 'x' },
    { status: 502, code: 'x' }, { status: 401, code: 'token_expired' },
  ]);
  const states = [];
  const got = [];
  const client = new SSEClient('http://hub.invalid/sse/stream',
    { transport: 'fetch', token: 'T', fetch: fn, minDelayMs: 100, maxDelayMs: 250, idleTimeoutMs: 0 });
  client.on('note', (m) => got.push(m));
  client.onState((s) => states.push(s));
  client.connect();
  await until('the client to give up', () => client.state === 'closed' && calls.length === 6, 8000, 5);
  assert.deepEqual(got.map((m) => [m.data, m.id]), [[{ n: 1 }, 'm-1']]);
  assert.equal(calls[0].headers.Authorization, 'Bearer T');
  assert.equal(calls[0].headers['Last-Event-ID'], undefined);
  calls.slice(1).forEach((c) => assert.equal(c.headers['Last-Event-ID'], 'm-1'));
  const gaps = calls.slice(1).map((c, i) => c.t - calls[i].t);
  // Timers never fire early (but for rounding), and may fire late on a busy
  // machine: a tight lower bound, a loose upper one. Without the cap the
  // last delay would be in [400, 800].
  const early = 3;
  const late = 120;
  assert.ok(gaps[0] >= 30 - early && gaps[0] <= 30 + late, 'first reconnect after retry: 30 ms, got ' + gaps);
  // failures 1..4: caps 100, 200, 250, 250; a delay is in [cap/2, cap]
  [[1, 50, 100], [2, 100, 200], [3, 125, 250], [4, 125, 250]].forEach(([i, lo, hi]) =>
    assert.ok(gaps[i] >= lo - early && gaps[i] <= hi + late, `gap ${i} = ${gaps[i]} not in [${lo}, ${hi}]: ${gaps}`));
  const last = states[states.length - 1];
  assert.equal(last.error.status, 401);
  assert.equal(last.error.code, 'token_expired');
  await sleep(600);
  assert.equal(calls.length, 6, 'no attempt after a 401');
});

await test('client: a server "disconnect" event ends the stream for good', async () => {
  const { fn, calls } = scriptedFetch([
    { stream: 'event: connected\ndata: {}\n\nevent: disconnect\ndata: {"reason":"logout"}\n\n' }]);
  const client = new SSEClient('http://hub.invalid/sse/stream', { transport: 'fetch', fetch: fn, minDelayMs: 10, idleTimeoutMs: 0 });
  let reason = null;
  client.on('disconnect', (m) => { reason = m.data.reason; });
  client.connect();
  await until('closed', () => client.state === 'closed', 2000, 5);
  await sleep(100);
  assert.equal(reason, 'logout');
  assert.equal(calls.length, 1);
});

await test('client: an exception in a handler is reported, and the stream stays up', async () => {
  const body = new ReadableStream({
    start(ctl) { ctl.enqueue(new TextEncoder().encode('event: x\ndata: 1\n\nevent: x\ndata: 2\n\n')); },  // never closes
  });
  const { fn, calls } = scriptedFetch([{ stream: body }]);
  const reported = [];
  const onUncaught = (e) => reported.push(e.message);
  process.on('uncaughtException', onUncaught);
  const seen = [];
  const client = new SSEClient('http://hub.invalid/sse/stream', { transport: 'fetch', fetch: fn, minDelayMs: 10, idleTimeoutMs: 0 });
  client.on('x', (m) => { seen.push(m.data); throw new Error('handler bug ' + m.data); });
  client.connect();
  try {
    await until('both events', () => seen.length === 2 && reported.length === 2, 2000, 5);
    await sleep(200);
    assert.deepEqual(reported, ['handler bug 1', 'handler bug 2']);
    assert.equal(client.state, 'connected');
    assert.equal(calls.length, 1, 'no reconnect');
  } finally {
    client.close();
    process.off('uncaughtException', onUncaught);
  }
});

// ---- the page in Chromium -------------------------------------------------------

const state = env('SSEHUB_STATE');
const base = env('BASE_URL').replace(/\/$/, '');
const otherOrigin = env('OTHER_ORIGIN').replace(/\/$/, '');
const deniedOrigin = env('DENIED_ORIGIN').replace(/\/$/, '');
const artifacts = env('ARTIFACTS');
const token = (name) => fs.readFileSync(path.join(state, name + '.jwt'), 'utf8').trim();
const alice = token('alice');
const admin = token('admin');

async function api(route, body) {
  const res = await fetch(base + route, {
    method: body ? 'POST' : 'GET',
    headers: Object.assign({ Authorization: 'Bearer ' + admin }, body ? { 'Content-Type': 'application/json' } : {}),
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(5000),
  });
  const json = await res.json();
  assert.equal(res.status, 200, route + ' answered ' + res.status + ' ' + JSON.stringify(json));
  return json.data;
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssehub-chromium-'));
const browser = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
         '--no-first-run', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1400, height: 1000 },
  timeout: 30000,
});

// Script errors and CSP violations of every page; failed loads (502 while
// ssehub restarts) are expected and left out.
const pageErrors = [];
// Every /sse/stream request: {page, type, url, headers}.
const streamRequests = [];

async function openPage(url, label) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(label + ': ' + e.message));
  page.on('console', (m) => {
    // The denied origin's CORS refusals are the point of its test.
    if (m.type() === 'error' && label !== 'denied' && !/Failed to load resource|net::ERR_/.test(m.text())) {
      pageErrors.push(label + ': console: ' + m.text());
    }
  });
  page.on('request', async (req) => {
    if (!req.url().includes('/sse/stream')) return;
    const entry = { page: label, type: req.resourceType(), url: req.url(), headers: {} };
    streamRequests.push(entry);
    entry.headers = await req.allHeaders().catch(() => ({}));
  });
  await page.goto(url, { timeout: 15000 });
  return page;
}

const text = (page, sel) => page.locator(sel).textContent({ timeout: 2000 });
const logText = (page, panel) => page.locator(`#${panel}-log`).innerText({ timeout: 2000 });
const statusIs = (page, panel, want) => page.waitForFunction(
  ([sel, w]) => document.querySelector(sel).textContent === w, [`#${panel}-status`, want], { timeout: 15000, polling: 50 });

async function bothConnected(page, timeout = 15000) {
  await page.waitForFunction(() => ['es', 'fx'].every((p) => document.getElementById(p + '-status').textContent === 'connected'),
    null, { timeout, polling: 100 });
}

async function inBothLogs(page, marker, timeout = 8000) {
  await until(`"${marker}" in both logs`, async () =>
    (await logText(page, 'es')).includes(marker) && (await logText(page, 'fx')).includes(marker), timeout);
}

const marker = (what) => what + '-' + Math.random().toString(36).slice(2, 10);
let page;

try {
  await test('page: loads, both clients show connected (EventSource with ?token=, fetch with Authorization)', async () => {
    page = await openPage(`${base}/#token=${alice}&admin=${admin}`, 'main');
    await bothConnected(page);
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    assert.match(await text(page, '#es-client'), uuid);
    assert.match(await text(page, '#fx-client'), uuid);
    const es = streamRequests.find((r) => r.page === 'main' && r.type === 'eventsource');
    const fx = streamRequests.find((r) => r.page === 'main' && r.type === 'fetch');
    assert.ok(es && new URL(es.url).searchParams.get('token') === alice, 'EventSource URL carries the token');
    assert.ok(fx, 'a fetch() stream request was made');
    assert.equal(fx.headers.authorization, 'Bearer ' + alice);
    assert.ok(!fx.url.includes('token='), 'no token in the fetch URL: ' + fx.url);
    await page.evaluate(() => { window.__sameDocument = true; });
  });

  await test('page: pings arrive (last ping shown in both panels)', async () => {
    await until('last ping', async () => (await text(page, '#es-ping')) !== '–' && (await text(page, '#fx-ping')) !== '–', 8000);
  });

  let lastId = '';
  await test('broadcast from the test appears in both logs, with its id', async () => {
    const m = marker('bcast');
    const r = await api('/api/sse/broadcast', { event: 'notification', data: { title: m } });
    assert.ok(r.recipients >= 2, 'recipients ' + r.recipients);
    await inBothLogs(page, m);
    lastId = r.id;
    await until('last event id shown', async () =>
      (await text(page, '#es-last-id')) === r.id && (await text(page, '#fx-last-id')) === r.id, 3000);
  });

  await test('send-to-user: another user\'s message never shows, alice\'s does', async () => {
    const other = marker('for-bob');
    const mine = marker('for-alice');
    const rb = await api('/api/sse/send-to-user', { user_id: 'bob', event: 'notification', data: { title: other } });
    assert.equal(rb.recipients, 0);
    const ra = await api('/api/sse/send-to-user', { user_id: 'alice', event: 'notification', data: { title: mine } });
    assert.equal(ra.recipients, 2);
    await inBothLogs(page, mine);   // sent after bob's: bob's would be there by now
    assert.ok(!(await logText(page, 'es')).includes(other), 'bob\'s message in the EventSource log');
    assert.ok(!(await logText(page, 'fx')).includes(other), 'bob\'s message in the fetch log');
    lastId = ra.id;
  });

  await test('topics: #topics= subscribes both panels, the admin panel publishes to the topic and subscribes live streams, stats list it', async () => {
    const tp = await openPage(`${base}/#token=${alice}&admin=${admin}&topics=demo/news,demo/x`, 'topics');
    await bothConnected(tp);
    for (const panel of ['es', 'fx']) assert.equal(await text(tp, `#${panel}-topics`), 'demo/news, demo/x');
    const es = streamRequests.find((r) => r.page === 'topics' && r.type === 'eventsource');
    assert.deepEqual(new URL(es.url).searchParams.getAll('topic'), ['demo/news', 'demo/x']);
    const m = marker('topic');
    await tp.fill('#topic-form [name=topic]', 'demo/news');
    await tp.fill('#topic-form [name=data]', JSON.stringify({ title: m }));
    await tp.click('#topic-form button');
    await inBothLogs(tp, m);
    assert.match(await text(tp, '#send-result'), /publish → id .*, 2 recipient\(s\)/);
    assert.ok(!(await logText(page, 'es')).includes(m), 'the main page (no topics) got the topic message');
    await tp.fill('#subscribe-form [name=topics]', 'demo/extra');
    await tp.click('#subscribe-form button[value=subscribe]');
    await until('demo/extra in both panels', async () =>
      (await text(tp, '#es-topics')).includes('demo/extra') && (await text(tp, '#fx-topics')).includes('demo/extra'), 5000);
    await until('stats per topic', async () => (await tp.locator('#stats-topics').innerText()).includes('demo/news\t2'), 6000);
    // a topic the token does not allow: both panels closed with the hub's code
    await tp.fill('#topics', 'secret/1');
    await tp.click('#connect-all');
    for (const panel of ['es', 'fx']) {
      await statusIs(tp, panel, 'closed');
      assert.match(await text(tp, `#${panel}-detail`), /403 topic_forbidden/);
    }
    await tp.close();
  });

  await test('chart: active connections and messages/s from /metrics, drawn on the canvas', async () => {
    await until('chart source /metrics', async () => (await text(page, '#chart-source')).includes('/metrics'), 5000);
    await until('2 active connections', async () => Number(await text(page, '#chart-conn')) >= 2, 5000);
    for (let i = 0; i < 5; i++) lastId = (await api('/api/sse/broadcast', { event: 'notification', data: { tick: i } })).id;
    await until('messages/s > 0', async () => Number(await text(page, '#chart-rate')) > 0, 5000);
    // Pixels of both series: the connection line and at least one rate bar.
    const painted = await page.evaluate(() => {
      const c = document.getElementById('chart');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const css = getComputedStyle(document.documentElement);
      const rgb = (v) => { const h = css.getPropertyValue(v).trim(); return [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)); };
      const want = { line: rgb('--ok'), bar: rgb('--rate') };
      const n = { line: 0, bar: 0 };
      for (let i = 0; i < d.length; i += 4) {
        for (const k of Object.keys(want)) {
          if (d[i + 3] === 255 && want[k].every((v, j) => Math.abs(d[i + j] - v) < 8)) n[k]++;
        }
      }
      return n;
    });
    assert.ok(painted.line > 20 && painted.bar > 20, 'painted pixels ' + JSON.stringify(painted));
  });

  await test('ssehub restarted (SIGTERM, started again on the same socket): reconnecting, then connected, no reload', async () => {
    const pidFile = path.join(state, 'ssehub.pid');
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a.length);
    const sock = argv[argv.indexOf('--listen') + 1].replace(/^unix:/, '');
    assert.ok(argv.includes('--history-file'), 'run.sh starts ssehub with --history-file');
    const before = streamRequests.length;

    process.kill(pid, 'SIGTERM');
    await until('ssehub to exit', () => !fs.existsSync('/proc/' + pid), 10000);
    assert.ok(!fs.existsSync(sock), 'the socket is removed on exit');
    await statusIs(page, 'es', 'reconnecting');
    await statusIs(page, 'fx', 'reconnecting');
    await sleep(2500);   // a few failed attempts (nginx 502) while the hub is down
    assert.equal(await text(page, '#es-status'), 'reconnecting');
    assert.equal(await text(page, '#fx-status'), 'reconnecting');

    const log = fs.openSync(path.join(state, 'ssehub.log'), 'a');
    const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ['ignore', log, log] });
    child.unref();
    fs.writeFileSync(pidFile, child.pid + '\n');   // scripts/demo.sh stop finds it there
    await until('the new socket', () => fs.existsSync(sock), 5000);

    await bothConnected(page, 40000);
    assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page was reloaded');
    // The fetch client sent Last-Event-ID, the EventSource one last_event_id;
    // the new hub read the history file, so both resumed.
    const after = streamRequests.slice(before).filter((r) => r.page === 'main');
    // (the EventSource client's status probes are fetches too, with ?token=)
    const fx = after.filter((r) => r.type === 'fetch' && !r.url.includes('token='));
    assert.ok(fx.length >= 2, 'fetch attempts while down and after: ' + fx.length);
    fx.forEach((r) => assert.equal(r.headers['last-event-id'], lastId, 'Last-Event-ID of ' + r.url));
    const es = after.filter((r) => r.type === 'eventsource');
    assert.ok(es.length >= 1);
    es.forEach((r) => assert.equal(new URL(r.url).searchParams.get('last_event_id'), lastId));
    await until('resumed:true in both logs', async () =>
      (await logText(page, 'es')).includes('"resumed":true') && (await logText(page, 'fx')).includes('"resumed":true'), 5000);
  });

  await test('after the restart a broadcast reaches both clients', async () => {
    const m = marker('after-restart');
    await api('/api/sse/broadcast', { event: 'notification', data: { title: m } });
    await inBothLogs(page, m);
  });

  await test('EventSource with the token in a cookie (no token in the URL)', async () => {
    const before = streamRequests.length;
    await page.selectOption('#es-token-in', 'cookie');
    await until('a new EventSource request', () => streamRequests.slice(before).some((r) => r.type === 'eventsource'), 5000);
    await statusIs(page, 'es', 'connected');
    const req = streamRequests.slice(before).find((r) => r.type === 'eventsource');
    assert.equal(new URL(req.url).searchParams.get('token'), null, 'token in URL: ' + req.url);
    await until('request headers', () => req.headers.cookie !== undefined, 2000);
    assert.ok(req.headers.cookie.includes('token=' + alice), 'cookie header: ' + req.headers.cookie);
    const m = marker('cookie');
    await api('/api/sse/broadcast', { event: 'notification', data: { title: m } });
    await inBothLogs(page, m);
    await page.screenshot({ path: path.join(artifacts, 'browser.png') });
  });

  await test(`page on another origin (${otherOrigin}): CORS with credentials, cookie, Authorization, admin API`, async () => {
    const p2 = await openPage(`${otherOrigin}/#hub=${base}&token=${alice}&admin=${admin}`, 'other');
    await bothConnected(p2);
    await p2.selectOption('#es-token-in', 'cookie');   // EventSource withCredentials
    const before = streamRequests.length;
    await until('a new EventSource request', () => streamRequests.slice(before).some((r) => r.page === 'other' && r.type === 'eventsource'), 5000);
    await statusIs(p2, 'es', 'connected');
    const m = marker('cross-origin');
    await api('/api/sse/broadcast', { event: 'notification', data: { title: m } });
    await inBothLogs(p2, m);
    await until('stats table filled cross-origin', async () => Number(await text(p2, '#stats-total')) >= 4, 6000);
    await p2.screenshot({ path: path.join(artifacts, 'browser-other-origin.png') });
    await p2.close();
  });

  await test(`page on an origin outside the allowlist (${deniedOrigin}) is refused by CORS`, async () => {
    const p3 = await openPage(`${deniedOrigin}/#hub=${base}&token=${alice}&admin=${admin}`, 'denied');
    await until('both clients retrying', async () =>
      (await text(p3, '#es-status')) === 'reconnecting' && (await text(p3, '#fx-status')) === 'reconnecting', 8000);
    await sleep(1500);
    assert.notEqual(await text(p3, '#fx-status'), 'connected');
    assert.notEqual(await text(p3, '#es-status'), 'connected');
    assert.match(await text(p3, '#stats-error'), /fetch|network/i);
    await p3.close();
  });

  await test('no script errors or CSP violations on any page', async () => {
    assert.deepEqual(pageErrors, []);
  });
} finally {
  await browser.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}

console.log(`1..${count}`);
console.log(`# ${count - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
