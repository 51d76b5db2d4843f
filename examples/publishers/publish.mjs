#!/usr/bin/env node
// Publish to ssehub from Node 18+ with fetch(), no dependencies.
//
//   SSEHUB_URL=https://sse.example.com SSEHUB_TOKEN=<admin JWT> \
//     node publish.mjs send-to-user '{"user_id":42,"event":"notification","data":{"n":1}}'
//
// Copy publish() into your code. It resolves to the answer's "data" ({id,
// recipients} for a publish), rejects with an SsehubError carrying ssehub's
// error code and message, and retries what may pass a moment later: 503
// (waiting its Retry-After), 502/504 from the front server while ssehub
// restarts, and network errors.
import { pathToFileURL } from 'node:url';

const ATTEMPTS = 5;        // 0.5 + 1 + 2 + 4 s of waiting at most, without Retry-After
const MAX_WAIT_S = 30;     // cap on a server's Retry-After

export class SsehubError extends Error {
  constructor(status, code, message) {
    super(`HTTP ${status} ${code}: ${message}`);
    Object.assign(this, { status, code });
  }
}

/** POSTs body to /api/sse/<route> (broadcast, send-to-user, send-to-client,
 * disconnect) and returns the answer's data. */
export async function publish(route, body, { url = process.env.SSEHUB_URL || 'http://localhost',
                                             token = process.env.SSEHUB_TOKEN } = {}) {
  const target = url.replace(/\/$/, '') + '/api/sse/' + route;
  for (let attempt = 1; ; attempt++) {
    let wait = 500 * 2 ** (attempt - 1);
    try {
      const res = await fetch(target, {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10000),
      });
      const text = await res.text();
      if (res.ok) return JSON.parse(text).data;
      let code = '';
      let message = text.slice(0, 200);        // a front server's error page
      try {
        ({ code, message } = JSON.parse(text).error);
      } catch { /* not ssehub's JSON */ }
      const err = new SsehubError(res.status, code, message);
      if (![502, 503, 504].includes(res.status) || attempt === ATTEMPTS) throw err;
      const retryAfter = res.headers.get('Retry-After') || '';
      if (/^[0-9]+$/.test(retryAfter)) wait = Math.min(Number(retryAfter), MAX_WAIT_S) * 1000;
    } catch (e) {
      if (e instanceof SsehubError) throw e;
      if (attempt === ATTEMPTS) throw new SsehubError(0, 'network', e.message);
    }
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [route, json] = process.argv.slice(2);
  if (!route || !json) {
    console.error('usage: publish.mjs ROUTE JSON   (SSEHUB_URL, SSEHUB_TOKEN in the environment)');
    process.exit(2);
  }
  publish(route, JSON.parse(json)).then(
    (data) => console.log(JSON.stringify(data)),
    (e) => { console.error('ssehub: ' + e.message); process.exit(1); });
}
