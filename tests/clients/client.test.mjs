// ssehub-client in Node (transport fetch) against the live stack: ssehub
// behind nginx, started by run.sh with --jwt-leeway 0 and a history file.
import assert from 'node:assert/strict';
import test, { after } from 'node:test';
import { SSEClient } from 'ssehub-client';
import { api, baseUrl, mintToken, sleep, stopHub, streamsOf, unique, until } from './lib.mjs';

const clients = [];
after(() => clients.forEach((c) => c.close()));

// A fetch that records every attempt (time, headers, status) and then
// really goes to nginx.
function recordingFetch() {
  const calls = [];
  const fn = async (url, init) => {
    const call = { t: Date.now(), url: String(url), headers: Object.assign({}, init.headers), status: 0 };
    calls.push(call);
    const res = await fetch(url, init);
    call.status = res.status;
    return res;
  };
  return { fn, calls };
}

// A client of the live hub that keeps what it gets: events by name, states.
function liveClient(options, names = []) {
  const rec = recordingFetch();
  const client = new SSEClient(baseUrl() + '/sse/stream', Object.assign({
    transport: 'fetch', fetch: rec.fn, minDelayMs: 200, maxDelayMs: 1600,
  }, options));
  const got = { all: [], connected: [], states: [], calls: rec.calls };
  ['connected', ...names].forEach((name) => client.on(name, (m) => {
    got.all.push(m);
    if (name === 'connected') got.connected.push(m.data);
  }));
  client.onState((s) => got.states.push(s));
  clients.push(client);
  return { client, got, of: (name) => got.all.filter((m) => m.event === name) };
}

test('events: connected with a client id, then a broadcast and the user\'s own messages with their ids; another user\'s never', async () => {
  const user = unique('ev');
  const { client, got, of } = liveClient({ token: mintToken({ user_id: user }) }, ['note']);
  client.connect();
  await until('connected', () => got.connected.length === 1);
  assert.match(got.connected[0].client_id, /^[0-9a-f-]{36}$/);
  assert.equal(got.calls[0].headers.Authorization.startsWith('Bearer '), true);
  const b = await api('/api/sse/broadcast', { event: 'note', data: { n: 1, text: 'h\u00e9llo \u20ac' } });
  const other = await api('/api/sse/send-to-user', { user_id: unique('someone-else'), event: 'note', data: { n: 2 } });
  const mine = await api('/api/sse/send-to-user', { user_id: user, event: 'note', data: [1, { n: 3 }] });
  await until('two notes', () => of('note').length === 2);
  await sleep(200);
  assert.deepEqual(of('note').map((m) => [m.id, m.data]), [[b.id, { n: 1, text: 'h\u00e9llo \u20ac' }], [mine.id, [1, { n: 3 }]]]);
  assert.equal(other.recipients, 0);
  assert.equal(client.lastEventId, mine.id);
  assert.equal(client.state, 'connected');
});

test('close(): the hub sees the stream go, and nothing more is fetched or delivered', async () => {
  const user = unique('close');
  const { client, got, of } = liveClient({ token: mintToken({ user_id: user }) }, ['note']);
  client.connect();
  await until('the hub counts the stream', async () => got.connected.length === 1 && (await streamsOf(user)) === 1);
  client.close();
  assert.equal(client.state, 'closed');
  await until('the hub drops the stream', async () => (await streamsOf(user)) === 0, 5000);
  await api('/api/sse/send-to-user', { user_id: user, event: 'note', data: 1 });
  await sleep(500);
  assert.equal(of('note').length, 0);
  assert.equal(got.calls.length, 1);
});

test('disconnect through the API: the client closes for good', async () => {
  const user = unique('logout');
  const { client, got } = liveClient({ token: () => mintToken({ user_id: user }) }, ['disconnect']);
  client.connect();
  await until('connected', () => got.connected.length === 1);
  const r = await api('/api/sse/disconnect', { user_id: user, reason: 'logout' });
  assert.equal(r.closed, 1);
  await until('closed', () => client.state === 'closed', 5000);
  assert.match(got.states.at(-1).detail, /disconnect: logout/);
  await sleep(600);
  assert.equal(got.calls.length, 1, 'no reconnect after disconnect');
});

test('topics: asked for at connect, client.topics follows the hub (subscribed, unsubscribed), a reconnect comes back with the options\' topics', async () => {
  const user = unique('topics');
  const t = unique('t');
  const { client, got, of } = liveClient({
    token: () => mintToken({ user_id: user, topics: [t + '/*'] }),
    topics: [t + '/a', t + '/b'],
  }, ['news', 'subscribed', 'unsubscribed']);
  client.connect();
  await until('connected', () => got.connected.length === 1);
  assert.deepEqual(got.connected[0].topics, [t + '/a', t + '/b']);
  assert.deepEqual(client.topics, [t + '/a', t + '/b']);
  assert.deepEqual(new URL(got.calls[0].url).searchParams.getAll('topic'), [t + '/a', t + '/b']);
  const p = await api('/api/sse/publish', { topic: t + '/b', event: 'news', data: { n: 1 } });
  assert.equal(p.recipients, 1);
  await until('the topic message', () => of('news').length === 1);
  assert.equal(of('news')[0].id, p.id);

  const clientId = got.connected[0].client_id;
  assert.deepEqual(await api('/api/sse/subscribe', { client_id: clientId, topics: [t + '/c', 'other'] }), { recipients: 1 });
  await until('subscribed', () => of('subscribed').length === 1);
  assert.deepEqual(client.topics, [t + '/a', t + '/b', t + '/c', 'other']);
  assert.deepEqual(await api('/api/sse/unsubscribe', { user_id: user, topics: [t + '/a'] }), { recipients: 1 });
  await until('unsubscribed', () => of('unsubscribed').length === 1);
  assert.deepEqual(client.topics, [t + '/b', t + '/c', 'other']);
  assert.equal((await api('/api/sse/publish', { topic: t + '/a', event: 'news', data: 2 })).recipients, 0);

  client.options.topics = [t + '/z'];
  client.reconnect();
  await until('connected again', () => got.connected.length === 2);
  assert.deepEqual(client.topics, [t + '/z'], 'server-side subscriptions are not kept across a reconnect');
  const stats = await api('/api/sse/stats?topics=1');
  assert.equal(stats.topic_clients[t + '/z'], 1);
  assert.equal(stats.topic_clients[t + '/b'], undefined);
});

test('topics: one the token does not allow is 403 topic_forbidden, and the client closes without retrying', async () => {
  const user = unique('forbidden');
  const { client, got } = liveClient({ token: mintToken({ user_id: user, topics: ['mine/*'] }), topics: ['mine/1', 'yours/1'] });
  client.connect();
  await until('closed', () => client.state === 'closed', 5000);
  await sleep(600);
  assert.deepEqual(got.calls.map((c) => c.status), [403]);
  const last = got.states.at(-1);
  assert.equal(last.error.code, 'topic_forbidden');
  assert.match(last.error.message, /yours\/1/);
});

test('401 on connect: the token function is asked again with expired: true; a second 401 in a row closes', async () => {
  const user = unique('refused');
  const asked = [];
  const a = liveClient({ token: ({ expired }) => { asked.push(expired); return mintToken({ user_id: user }, asked.length === 1 ? -10 : 60); } });
  a.client.connect();
  await until('connected with the second token', () => a.got.connected.length === 1, 5000);
  assert.deepEqual(asked, [false, true]);
  assert.deepEqual(a.got.calls.map((c) => c.status), [401, 200]);

  const asked2 = [];
  const b = liveClient({ token: ({ expired }) => { asked2.push(expired); return mintToken({ user_id: user }, -10); } });
  b.client.connect();
  await until('closed', () => b.client.state === 'closed', 5000);
  await sleep(600);
  assert.deepEqual(asked2, [false, true]);
  assert.deepEqual(b.got.calls.map((c) => c.status), [401, 401]);
  const last = b.got.states.at(-1);
  assert.equal(last.error.status, 401);
  assert.equal(last.error.code, 'token_expired');
});

test('token refresh: 2 s tokens while a message goes out every 100 ms for 6 s: every message once, in order', async () => {
  const user = unique('refresh');
  const asked = [];
  const { client, got, of } = liveClient({
    token: ({ expired }) => { asked.push(expired); return mintToken({ user_id: user }, 2); },
  }, ['tick', 'token_expired']);
  client.connect();
  await until('connected', () => got.connected.length === 1);
  const sent = [];
  const end = Date.now() + 6000;
  for (let i = 0; Date.now() < end; i++) {
    sent.push((await api('/api/sse/send-to-user', { user_id: user, event: 'tick', data: { i } })).id);
    await sleep(100);
  }
  await until('every tick', () => of('tick').length >= sent.length, 6000);
  await sleep(300);
  const ticks = of('tick');
  assert.deepEqual(ticks.map((m) => m.id), sent, 'ids in publish order, none twice');
  assert.deepEqual(ticks.map((m) => m.data.i), sent.map((_, i) => i));
  assert.ok(of('token_expired').length >= 2, 'token_expired events: ' + of('token_expired').length);
  assert.equal(asked[0], false);
  assert.ok(asked.slice(1).every((e) => e === true) && asked.length >= 3, 'asked ' + JSON.stringify(asked));
  // Each new stream resumed from the last id the client had.
  assert.ok(got.connected.slice(1).every((c) => c.resumed === true), JSON.stringify(got.connected));
});

test('hub restart: backoff with jitter while nginx answers 502, then resume with Last-Event-ID: nothing lost, nothing twice', async () => {
  const user = unique('restart');
  const token = () => mintToken({ user_id: user });
  const group = [1, 2, 3].map(() => liveClient({ token }, ['note']));
  group.forEach((g) => g.client.connect());
  await until('3 connected', () => group.every((g) => g.got.connected.length === 1));
  const m1 = await api('/api/sse/send-to-user', { user_id: user, event: 'note', data: 1 });
  await until('m1 everywhere', () => group.every((g) => g.of('note').length === 1));

  const stoppedAt = Date.now();
  const startHub = await stopHub();
  await sleep(2500);   // several failed attempts each
  await startHub();
  // Published while the clients wait for their next attempt: they get
  // these from the hub's history (it kept it in its file across the restart).
  const m2 = await api('/api/sse/send-to-user', { user_id: user, event: 'note', data: 2 });
  const m3 = await api('/api/sse/send-to-user', { user_id: user, event: 'note', data: 3 });
  await until('m3 everywhere', () => group.every((g) => g.of('note').length >= 3), 8000);
  await sleep(300);

  const firstGaps = [];
  for (const g of group) {
    assert.deepEqual(g.of('note').map((m) => m.id), [m1.id, m2.id, m3.id]);
    assert.equal(g.got.connected.length, 2);
    assert.equal(g.got.connected[1].resumed, true);
    const after = g.got.calls.filter((c) => c.t >= stoppedAt);
    const failed = after.filter((c) => c.status === 502);
    assert.ok(failed.length >= 3, 'attempts while down: ' + after.map((c) => c.status));
    assert.equal(after.at(-1).status, 200);
    after.slice(1).forEach((c) => assert.equal(c.headers['Last-Event-ID'], m1.id));
    // The delay after the k-th failure is random in [cap/2, cap], cap =
    // min(1600, 200 * 2^k). Timers fire late on a busy machine, never early.
    for (let k = 0; k + 1 < after.length; k++) {
      const cap = Math.min(1600, 200 * 2 ** k);
      const gap = after[k + 1].t - after[k].t;
      assert.ok(gap >= cap / 2 - 3 && gap <= cap + 250, `gap ${k} = ${gap} ms not in [${cap / 2}, ${cap}]`);
    }
    firstGaps.push(after.slice(1, 4).map((c, k) => c.t - after[k].t));
  }
  // Jitter: three clients that failed together do not retry together.
  const flat = firstGaps.map((g) => g.join(','));
  assert.ok(new Set(flat).size === 3, 'identical backoff sequences: ' + flat.join(' | '));

  // A client that was not there at all resumes from m1 alone.
  const late = liveClient({ token, lastEventId: m1.id }, ['note']);
  late.client.connect();
  await until('m2 and m3 replayed', () => late.of('note').length === 2);
  assert.deepEqual(late.of('note').map((m) => m.data), [2, 3]);
  assert.equal(late.got.connected[0].resumed, true);
  assert.equal(late.got.calls[0].headers['Last-Event-ID'], m1.id);
});
