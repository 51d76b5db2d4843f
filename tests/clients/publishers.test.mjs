// The publishers of examples/publishers (PHP, Python, Node, Go, shell) run
// as a user would run them, against ssehub behind nginx: a message reaches a
// stream, an error answer is reported and not retried, a publish made while
// the hub restarts goes through, and a 503's Retry-After is waited for.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test, { after, before } from 'node:test';
import { SSEClient } from 'ssehub-client';
import { adminToken, api, baseUrl, env, mintToken, repo, sleep, stopHub, unique, until } from './lib.mjs';

const dir = path.join(repo, 'examples/publishers');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ssehub-publishers-'));
const goBinary = path.join(tmp, 'publish-go');

const PUBLISHERS = {
  php: () => ['php', [path.join(dir, 'publish.php')]],
  python: () => ['/usr/bin/python3', [path.join(dir, 'publish.py')]],
  node: () => [process.execPath, [path.join(dir, 'publish.mjs')]],
  go: () => [goBinary, []],
  shell: () => ['bash', [path.join(dir, 'publish.sh')]],
};

before(() => {
  // Standard library only: no module download, no toolchain download.
  execFileSync('go', ['build', '-o', goBinary, 'publish.go'], {
    cwd: dir,
    stdio: 'pipe',
    env: Object.assign({}, process.env, {
      GOCACHE: path.join(tmp, 'gocache'), GOPATH: path.join(tmp, 'gopath'),
      GOTOOLCHAIN: 'local', GOPROXY: 'off', GOFLAGS: '', GO111MODULE: '',
    }),
  });
});

const streams = [];
after(() => {
  streams.forEach((c) => c.close());
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Runs one publisher; resolves {code, stdout, stderr, ms}. */
function run(lang, route, body, { url = baseUrl(), token = adminToken() } = {}) {
  const [cmd, args] = PUBLISHERS[lang]();
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(cmd, [...args, route, JSON.stringify(body)], {
      env: Object.assign({}, process.env, { SSEHUB_URL: url, SSEHUB_TOKEN: token }),
      timeout: 30000,
    }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

/** The statuses of the admin API calls nginx logged, in order. */
function answered() {
  return fs.readFileSync(path.join(env('SSEHUB_STATE'), 'nginx/logs/access.log'), 'utf8').split('\n')
    .filter((l) => l.includes('"POST /api/sse/')).map((l) => l.split('"')[2].trim().split(' ')[0]);
}

/** An open stream of a new user (fetch transport); resolves when connected. */
async function listen(user, lastEventId = '') {
  const got = [];
  const client = new SSEClient(baseUrl() + '/sse/stream', {
    transport: 'fetch', token: () => mintToken({ user_id: user }), lastEventId, minDelayMs: 200, maxDelayMs: 1000,
  });
  let hello = null;
  client.on('hello', (m) => { hello = m.id; });
  client.on('published', (m) => got.push(m));
  streams.push(client);
  client.connect();
  // A first message, so that a stream cut later (nginx reloads in a test
  // below) resumes from it and misses nothing.
  await until('connected', () => client.state === 'connected');
  const h = await api('/api/sse/send-to-user', { user_id: user, event: 'hello', data: 0 });
  await until('hello', () => hello === h.id);
  return { client, got };
}

// Quotes, a backslash, non-ASCII, a nested array: the body must arrive as
// written.
const payload = (lang) => ({ lang, text: 'h\u00e9llo "quoted" \\ \u20ac \u{1F600}', list: [1, { n: null }] });

for (const lang of Object.keys(PUBLISHERS)) {
  test(`${lang}: send-to-user reaches the user's stream; a 403 and a 400 are reported with their codes and sent once`, async () => {
    const user = unique('pub-' + lang);
    const { got } = await listen(user);
    const r = await run(lang, 'send-to-user', { user_id: user, event: 'published', data: payload(lang) });
    assert.equal(r.code, 0, r.stderr);
    const answer = JSON.parse(r.stdout);
    assert.equal(answer.recipients, 1);
    await until('the message', () => got.length === 1, 5000);
    assert.deepEqual(got[0].data, payload(lang));
    assert.equal(got[0].id, answer.id);

    const before = answered();
    const refused = await run(lang, 'broadcast', { event: 'published', data: 1 }, { token: mintToken({ user_id: user }) });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^ssehub: HTTP 403 forbidden: .+/m);
    const bad = await run(lang, 'send-to-user', { user_id: user, event: 'bad\nname', data: 1 });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^ssehub: HTTP 400 invalid_field: .+/m);
    // One request each: resending cannot fix these.
    await sleep(100);
    assert.deepEqual(answered().slice(before.length), ['403', '400']);
  });
}

test('all five publish while ssehub restarts (nginx answers 502): each gets through once', async () => {
  const user = unique('pub-restart');
  const { client } = await listen(user);
  const m0 = await api('/api/sse/send-to-user', { user_id: user, event: 'published', data: 'before' });
  await until('m0', () => client.lastEventId === m0.id);
  client.close();
  const startHub = await stopHub();
  const runs = Object.keys(PUBLISHERS).map((lang) =>
    run(lang, 'send-to-user', { user_id: user, event: 'published', data: { lang } }));
  await sleep(1200);
  await startHub();
  const results = await Promise.all(runs);
  results.forEach((r, i) => assert.equal(r.code, 0, Object.keys(PUBLISHERS)[i] + ': ' + r.stderr));
  // A stream resuming from m0 gets the five from the history, once each.
  const late = await listen(user, m0.id);
  await until('five messages', () => late.got.length === 5, 5000);
  await sleep(300);
  assert.deepEqual(late.got.map((m) => m.data.lang).sort(), Object.keys(PUBLISHERS).sort());
  assert.deepEqual(late.got.map((m) => m.id).sort(), results.map((r) => JSON.parse(r.stdout).id).sort());
});

test('all five wait a 503\'s Retry-After (a front server in maintenance mode), then get through', async () => {
  // nginx in front of the same hub, answering 503 + Retry-After: 2 in
  // ssehub's error format while a flag file exists: what a publisher sees
  // from a hub that is stopping or has lost its backplane.
  const state = env('SSEHUB_STATE');
  const flag = path.join(state, 'maintenance');
  const log = path.join(state, 'nginx/logs/maintenance.log');
  const port = await new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const p = srv.address().port;
      srv.close(() => resolve(p));
    });
  });
  fs.writeFileSync(path.join(state, 'nginx/conf.d/maintenance.conf'), `
server {
    listen 127.0.0.1:${port};
    access_log ${log};
    location /api/sse/ {
        if (-f ${flag}) {
            add_header Retry-After 2 always;
            return 503 '{"success":false,"error":{"code":"maintenance","message":"back in a moment"}}';
        }
        fastcgi_pass ssehub_api;
        fastcgi_keep_conn on;
        include fastcgi_params;
    }
}
`);
  fs.writeFileSync(flag, '');
  execFileSync('nginx', ['-p', path.join(state, 'nginx') + '/', '-c', path.join(state, 'nginx/nginx.conf'),
    '-e', path.join(state, 'nginx/logs/error.log'), '-s', 'reload']);
  const url = `http://127.0.0.1:${port}`;
  await until('the maintenance server', async () => (await fetch(url + '/api/sse/health')).status === 503, 5000);
  fs.writeFileSync(log, '');

  const user = unique('pub-503');
  const { got } = await listen(user);
  const runs = Object.keys(PUBLISHERS).map((lang) =>
    run(lang, 'send-to-user', { user_id: user, event: 'published', data: { lang } }, { url }));
  const statuses = () => fs.readFileSync(log, 'utf8').trim().split('\n').filter((l) => l)
    .map((l) => l.split('"')[2].trim().split(' ')[0]);
  await until('a 503 for each', () => statuses().length === 5, 10000);
  // Without Retry-After they would all be through 0.5 s from now.
  fs.rmSync(flag);
  const results = await Promise.all(runs);
  results.forEach((r, i) => {
    const lang = Object.keys(PUBLISHERS)[i];
    assert.equal(r.code, 0, lang + ': ' + r.stderr);
    assert.ok(r.ms >= 1900 && r.ms < 6000, `${lang} took ${r.ms} ms: Retry-After is 2 s`);
  });
  await until('five messages', () => got.length === 5, 5000);
  assert.deepEqual(statuses().sort(), ['200', '200', '200', '200', '200', '503', '503', '503', '503', '503']);
});
