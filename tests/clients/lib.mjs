// Shared by the tests of tests/clients: the live stack run.sh started
// (scripts/demo.sh: ssehub behind nginx, HTTP and HTTPS), tokens signed with
// its secret, the admin API, and stopping / starting the hub.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '../..');

export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(name + ' is not set (run the tests with tests/clients/run.sh)');
  return v;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns something truthy; throws after timeoutMs. */
export async function until(what, fn, timeoutMs = 10000, stepMs = 50) {
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

/** A name no other test uses: users, markers. */
export const unique = (what) => what + '-' + crypto.randomBytes(5).toString('hex');

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** An HS256 JWT signed with the demo's secret, as ssehub reads it (one
 * trailing newline ignored). ttl in seconds; a negative ttl is expired. */
export function mintToken(claims, ttl = 3600) {
  let key = fs.readFileSync(path.join(env('SSEHUB_STATE'), 'jwt.secret'));
  if (key.length && key[key.length - 1] === 0x0a) key = key.subarray(0, key.length - 1);
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(Object.assign({ iat: now - 1, exp: now + ttl }, claims)));
  const sig = b64url(crypto.createHmac('sha256', key).update(head + '.' + body).digest());
  return head + '.' + body + '.' + sig;
}

export const adminToken = () => mintToken({ user_id: 'admin', role: 'admin' });

export const baseUrl = () => env('BASE_URL').replace(/\/$/, '');
export const tlsUrl = () => env('TLS_URL').replace(/\/$/, '');

/** Calls the admin API through nginx (POST when body is given) and returns
 * its data; fails the test on anything but 200. */
export async function api(route, body) {
  const res = await fetch(baseUrl() + route, {
    method: body ? 'POST' : 'GET',
    headers: Object.assign({ Authorization: 'Bearer ' + adminToken() },
                           body ? { 'Content-Type': 'application/json' } : {}),
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(5000),
  });
  const json = await res.json();
  assert.equal(res.status, 200, route + ' answered ' + res.status + ' ' + JSON.stringify(json));
  return json.data;
}

export async function streamsOf(user) {
  const stats = await api('/api/sse/stats');
  return stats.user_clients[user] || 0;
}

export async function totalClients() {
  return (await api('/api/sse/stats')).total_clients;
}

// ---- the hub ------------------------------------------------------------------

const pidFile = () => path.join(env('SSEHUB_STATE'), 'ssehub.pid');

function hubArgv() {
  const pid = Number(fs.readFileSync(pidFile(), 'utf8').trim());
  const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a.length);
  const sock = argv[argv.indexOf('--listen') + 1].replace(/^unix:/, '');
  return { pid, argv, sock };
}

/** Stops the hub with SIGTERM (it saves its history file) and returns a
 * function that starts it again with the same command line. */
export async function stopHub() {
  const { pid, argv, sock } = hubArgv();
  process.kill(pid, 'SIGTERM');
  await until('ssehub to exit', () => !fs.existsSync('/proc/' + pid), 10000);
  return async function startHub() {
    const log = fs.openSync(path.join(env('SSEHUB_STATE'), 'ssehub.log'), 'a');
    const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ['ignore', log, log] });
    child.unref();
    fs.closeSync(log);
    fs.writeFileSync(pidFile(), child.pid + '\n');   // demo.sh stop finds it there
    await until('the hub socket', () => fs.existsSync(sock), 5000);
    await until('the hub behind nginx', async () => {
      const res = await fetch(baseUrl() + '/api/sse/health', { signal: AbortSignal.timeout(1000) });
      return res.status === 200;
    }, 5000);
  };
}
