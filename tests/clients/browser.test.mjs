// ssehub-client in Debian's headless Chromium (driven by playwright-core,
// no browser download) against the live stack: token refresh without loss,
// the React and Vue examples (mount, a message, a new token, unmount), and
// one origin's 10 streams over HTTP/1.1 and over HTTP/2.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { after, before } from 'node:test';
import { chromium } from 'playwright-core';
import { api, baseUrl, env, mintToken, sleep, streamsOf, tlsUrl, totalClients, unique, until } from './lib.mjs';

let browser;
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssehub-chromium-'));
const pageErrors = [];

before(async () => {
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: env('CHROMIUM'),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
           '--no-first-run', '--disable-component-update', '--disable-sync'],
    ignoreHTTPSErrors: true,   // the stack's self-signed certificate
    timeout: 30000,
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
});

/** A new page; its script errors go to pageErrors, its stream requests
 * (with their headers) to the returned list. */
async function newPage(label) {
  const page = await browser.newPage();
  const requests = [];
  page.on('pageerror', (e) => pageErrors.push(label + ': ' + e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource|net::ERR_/.test(m.text())) pageErrors.push(label + ': ' + m.text());
  });
  page.on('request', async (req) => {
    if (!req.url().includes('/sse/stream')) return;
    const entry = { url: req.url(), type: req.resourceType(), headers: {} };
    requests.push(entry);
    entry.headers = await req.allHeaders().catch(() => ({}));
  });
  return { page, requests };
}

test('token refresh in Chromium: 2 s tokens, a message every 100 ms for 6 s, both transports: every message once, in order', async () => {
  const { page } = await newPage('refresh');
  const users = { fetch: unique('br-fetch'), eventsource: unique('br-es') };
  // The application's token function: a token that expires 1-2 s later.
  await page.exposeFunction('newToken', (user) => mintToken({ user_id: user }, 2));
  await page.goto(baseUrl() + '/api/sse/health');
  await page.evaluate(async (u) => {
    const { SSEClient } = await import('/ssehub-client/index.js');
    window.got = {};
    for (const [transport, user] of Object.entries(u)) {
      const got = { ticks: [], expired: 0, asked: [], connected: [] };
      window.got[transport] = got;
      const client = new SSEClient('/sse/stream', {
        transport,
        token: ({ expired }) => { got.asked.push(expired); return window.newToken(user); },
        minDelayMs: 200,
      });
      client.on('tick', (m) => got.ticks.push([m.id, m.data.i]));
      client.on('token_expired', () => { got.expired++; });
      client.on('connected', (m) => got.connected.push(m.data));
      client.connect();
    }
  }, users);
  await until('both connected', () => page.evaluate(() =>
    Object.values(window.got).every((g) => g.connected.length === 1)), 10000);
  const sent = { fetch: [], eventsource: [] };
  const end = Date.now() + 6000;
  for (let i = 0; Date.now() < end; i++) {
    for (const [transport, user] of Object.entries(users)) {
      sent[transport].push((await api('/api/sse/send-to-user', { user_id: user, event: 'tick', data: { i } })).id);
    }
    await sleep(100);
  }
  await until('every tick', () => page.evaluate((n) =>
    Object.values(window.got).every((g) => g.ticks.length >= n), sent.fetch.length), 8000);
  await sleep(300);
  const got = await page.evaluate(() => window.got);
  for (const transport of Object.keys(users)) {
    const g = got[transport];
    assert.deepEqual(g.ticks.map(([id]) => id), sent[transport], transport + ': ids in order, none twice');
    assert.deepEqual(g.ticks.map(([, i]) => i), sent[transport].map((_, i) => i), transport);
    assert.ok(g.expired >= 2, transport + ': token_expired ' + g.expired);
    assert.ok(g.asked[0] === false && g.asked.length >= 3 && g.asked.slice(1).every((e) => e), transport + ': asked ' + g.asked);
    assert.ok(g.connected.slice(1).every((c) => c.resumed === true), transport + ': ' + JSON.stringify(g.connected));
  }
  await page.close();
  // Gone from the hub before the next test counts its streams.
  await until('the streams closed', async () =>
    (await streamsOf(users.fetch)) === 0 && (await streamsOf(users.eventsource)) === 0, 5000);
});

// The example pages: #state, #client-id, #notifications li, #token, #toggle.
async function exampleFlow(name, pagePath) {
  const baseline = await totalClients();
  const u1 = unique(name + '-a');
  const u2 = unique(name + '-b');
  const { page, requests } = await newPage(name);
  await page.goto(`${baseUrl()}${pagePath}#token=${mintToken({ user_id: u1 })}`);
  await page.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: 10000 });
  await until('the hub counts one stream', async () => (await streamsOf(u1)) === 1, 5000);
  await sleep(300);
  assert.equal(await streamsOf(u1), 1, 'exactly one stream');
  assert.equal(requests.length, 1, 'one stream request: ' + requests.map((r) => r.url));
  assert.match(await page.locator('#client-id').textContent(), /^[0-9a-f-]{36}$/);

  const title = unique('hello');
  const m = await api('/api/sse/send-to-user', { user_id: u1, event: 'notification', data: { title } });
  assert.equal(m.recipients, 1);
  await page.locator(`#notifications li[data-id="${m.id}"]`).waitFor({ timeout: 5000 });
  assert.equal(await page.locator(`#notifications li[data-id="${m.id}"]`).textContent(), title);

  // A new token: a new stream (the old one closed), resuming from m.
  await page.fill('#token', mintToken({ user_id: u2 }));
  await until('the stream moved to the new user', async () =>
    (await streamsOf(u1)) === 0 && (await streamsOf(u2)) === 1, 5000);
  await page.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: 5000 });
  const again = requests.slice(1);
  assert.equal(again.length, 1, 'one new stream request');
  assert.equal(again[0].headers['last-event-id'], m.id);
  const title2 = unique('again');
  const m2 = await api('/api/sse/send-to-user', { user_id: u2, event: 'notification', data: { title: title2 } });
  await page.locator(`#notifications li[data-id="${m2.id}"]`).waitFor({ timeout: 5000 });

  await page.click('#toggle');
  await page.locator('#unmounted').waitFor({ timeout: 2000 });
  await until('total_clients back to ' + baseline, async () => (await totalClients()) === baseline, 5000);
  await sleep(500);
  assert.equal(requests.length, 2, 'nothing reconnects after unmount');
  await page.close();
}

test('React (development build, StrictMode mounts twice): one stream, a message, a new token resumes, unmount closes', () =>
  exampleFlow('react-dev', '/react/dev.html'));

test('React (production build): the same', () => exampleFlow('react', '/react/'));

test('Vue: one stream, a message, a new token (a ref) resumes, unmount closes', () => exampleFlow('vue', '/vue/'));

// Opens 10 EventSources on the page's origin, then broadcasts once.
async function tenStreams(origin) {
  const user = unique('ten');
  const { page } = await newPage('ten ' + origin);
  await page.goto(origin + '/api/sse/health');
  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  await page.evaluate((token) => {
    window.received = 0;
    window.sources = Array.from({ length: 10 }, () => {
      const es = new EventSource('/sse/stream?token=' + token);
      es.addEventListener('ten', () => { window.received++; });
      return es;
    });
  }, mintToken({ user_id: user }));
  // The streams that got a connection have it within a second or so.
  await until('6 streams at least', async () => (await streamsOf(user)) >= 6, 10000);
  await sleep(1500);
  const open = await streamsOf(user);
  await api('/api/sse/broadcast', { event: 'ten', data: { user } });
  await until('the broadcast', () => page.evaluate(() => window.received >= 6), 5000);
  await sleep(1000);
  const received = await page.evaluate(() => window.received);
  await page.close();
  await until('the streams closed', async () => (await streamsOf(user)) === 0, 5000);
  return { protocol, open, received };
}

test('HTTP/1.1: one origin, 10 EventSources: only 6 are open and get a broadcast', async () => {
  const r = await tenStreams(baseUrl());
  assert.deepEqual(r, { protocol: 'http/1.1', open: 6, received: 6 });
});

test('HTTP/2 (examples/nginx/ssehub-tls.conf): one origin, 10 EventSources: all 10 open and get it', async () => {
  const r = await tenStreams(tlsUrl());
  assert.deepEqual(r, { protocol: 'h2', open: 10, received: 10 });
});

test('no script errors on any page', () => {
  assert.deepEqual(pageErrors, []);
});
