// ssehub-client: a small Server-Sent Events client for ssehub (and any SSE
// server). An ES module without dependencies, for browsers and Node 18+;
// react.js and vue.js in this package wrap it for React and Vue 3.
//
//   import { SSEClient } from 'ssehub-client';
//
//   const client = new SSEClient('/sse/stream', {
//     transport: 'fetch',                 // or 'eventsource' (the default)
//     token: ({ expired }) => getJwt(expired),  // a string, or a function (may be async)
//   });
//   client.on('notification', (msg) => console.log(msg.data, msg.id));
//   client.onState(({ state, detail }) => showBadge(state, detail));
//   client.connect();                     // ... client.close();
//
// Topics: `topics: ['orders/42']` asks for them at connect (one topic=
// parameter each; the token's topics claim must allow every one, or the hub
// answers 403 topic_forbidden and the client closes). client.topics is the
// stream's list as the hub says it: from `connected`, then `subscribed` and
// `unsubscribed` (the back end's server-side changes, which a reconnect does
// not keep: the stream comes back with the topics of its options).
//
// Two transports, same API:
//
// * 'eventsource': the browser's EventSource. It cannot send headers, so the
//   token goes in the query string (tokenIn: 'query', the default: it then
//   shows up in access logs, see examples/nginx/README.md) or in a cookie your
//   server set (tokenIn: 'cookie'; pass withCredentials: true when the hub is
//   on another origin).
// * 'fetch': fetch() plus the stream parser below. The token goes in an
//   `Authorization: Bearer` header (never in a URL), and a reconnect sends the
//   `Last-Event-ID` header.
//
// Both reconnect by themselves with exponential backoff (plus jitter, so a
// thousand browsers do not come back in the same millisecond) and resume
// where they left off: the hub replays what was missed after the last event
// id. The browser's own EventSource retry is not used: it has no backoff,
// and it gives up for good on any answer other than 200, such as the 502 that
// nginx returns while ssehub restarts.
//
// Tokens: when `token` is a function, a stream that ends with ssehub's
// `token_expired` event, or an attempt refused with 401, asks it for a new
// token ({expired: true}) and reconnects at once with the last event id, so
// nothing published in between is lost. A second 401 in a row closes the
// client (the token source is broken; retrying would only hammer the hub).
//
// A stream the server ends on purpose (ssehub's `disconnect` event) and
// answers that retrying cannot fix (400, 401 with a fixed token, 403, 404,
// 405, 204) close the client: fix the cause, then connect() again.
'use strict';

const PERMANENT_STATUS = new Set([204, 400, 401, 403, 404, 405]);
// The events that tell the stream's topics (client.topics).
const TOPIC_EVENTS = ['connected', 'subscribed', 'unsubscribed'];

// Calls a user's handler. An exception in it must not look like a network
// error to the client (and reconnect): report it the way browsers report an
// uncaught one, later, and go on.
function callHandler(fn, arg) {
  try {
    fn(arg);
  } catch (e) {
    setTimeout(() => { throw e; }, 0);
  }
}

/**
 * Incremental parser for the text/event-stream format (WHATWG HTML,
 * "Server-sent events", "Interpreting an event stream"). Feed it decoded text
 * in chunks of any size: an event, a line or a CRLF may be split across
 * chunks. Calls onEvent({type, data, lastEventId}) for each complete event
 * and onRetry(ms) for each valid `retry:` field. An event the stream ends in
 * the middle of is never dispatched.
 */
export class SSEParser {
  constructor(onEvent, onRetry, lastEventId = '') {
    this._onEvent = onEvent;
    this._onRetry = onRetry || (() => {});
    this.lastEventId = lastEventId;  // the "last event ID string"
    this._idBuffer = lastEventId;    // kept from event to event, as the spec says
    this._data = '';
    this._eventType = '';
    this._pending = '';              // text after the last line break
    this._atStart = true;            // a leading U+FEFF (BOM) is ignored
    this._skipLF = false;            // the last chunk ended with CR: drop a leading LF
  }

  push(text) {
    if (this._skipLF && text.length > 0) {
      if (text[0] === '\n') text = text.slice(1);
      this._skipLF = false;
    }
    if (this._atStart && text.length > 0) {
      if (text[0] === '\uFEFF') text = text.slice(1);
      this._atStart = false;
    }
    const buf = this._pending + text;
    const lineBreak = /\r\n|\r|\n/g;
    let start = 0;
    let m;
    while ((m = lineBreak.exec(buf)) !== null) {
      // A CR as the very last character may be the first half of a CRLF.
      if (m[0] === '\r' && m.index === buf.length - 1) this._skipLF = true;
      this._line(buf.slice(start, m.index));
      start = lineBreak.lastIndex;
    }
    this._pending = buf.slice(start);
  }

  _line(line) {
    if (line === '') {
      this._dispatch();
      return;
    }
    if (line[0] === ':') return;     // a comment: keep-alive, nothing to do
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon !== -1) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value[0] === ' ') value = value.slice(1);
    }
    switch (field) {
      case 'event': this._eventType = value; break;
      case 'data': this._data += value + '\n'; break;
      case 'id': if (value.indexOf('\0') === -1) this._idBuffer = value; break;
      case 'retry': if (/^[0-9]+$/.test(value)) this._onRetry(parseInt(value, 10)); break;
      default: break;                // unknown fields are ignored
    }
  }

  _dispatch() {
    this.lastEventId = this._idBuffer;
    if (this._data === '') {
      this._eventType = '';
      return;
    }
    const event = {
      type: this._eventType || 'message',
      data: this._data.slice(0, -1),  // without the last LF
      lastEventId: this.lastEventId,
    };
    this._data = '';
    this._eventType = '';
    this._onEvent(event);
  }
}

/** An HTTP answer that is not a stream: the `error` of a state change.
 * status: the HTTP status; code: ssehub's error code ('' when the body was
 * not ssehub's JSON, e.g. a front server's error page). */
export class SSEHttpError extends Error {
  constructor(status, code, message) {
    super('HTTP ' + status + (code ? ' ' + code + ': ' + message : ''));
    this.status = status;
    this.code = code || '';
    this.name = 'SSEHttpError';
  }
}

// ssehub answers errors as {"success":false,"error":{"code","message"}}.
async function httpErrorOf(res) {
  let code = '';
  let message = '';
  try {
    const body = await res.json();
    if (body && body.error) {
      code = String(body.error.code || '');
      message = String(body.error.message || '');
    }
  } catch (e) {
    // not JSON (a front server's error page): the status says enough
  }
  return new SSEHttpError(res.status, code, message);
}

function parseData(text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    return text;
  }
}

export class SSEClient {
  /**
   * url: the stream URL (relative to the page, or absolute).
   * options:
   *   transport       'eventsource' | 'fetch' (default: eventsource when the
   *                   platform has it)
   *   token           string, or function({expired}) returning a string or
   *                   a promise; called before every attempt. expired is
   *                   true after `token_expired` or a 401: return a new
   *                   token then, not a cached one
   *   tokenIn         eventsource only: 'query' (default) or 'cookie'
   *   tokenParam      query parameter for the token ('token')
   *   lastEventIdParam query parameter a new EventSource resumes with
   *                   ('last_event_id'); fetch sends the Last-Event-ID header
   *   withCredentials send cookies to another origin (EventSource
   *                   withCredentials / fetch credentials 'include')
   *   topics          topics to subscribe to at connect ([]), one topic=
   *                   query parameter each; may be changed, then reconnect()
   *   lastEventId     resume from this id on the first connect
   *   minDelayMs      first reconnection delay after a failure (1000)
   *   maxDelayMs      cap of the exponential backoff (30000)
   *   idleTimeoutMs   reconnect when nothing arrives for this long (75000:
   *                   2.5 x ssehub's 30 s ping); 0 disables
   *   stopOn          server events that end the stream for good
   *                   (['disconnect'])
   *   refreshOn       server events after which a function token is asked
   *                   for a new one and the stream reconnects at once
   *                   (['token_expired']); with a string token they close
   *   fetch           the fetch function to use (default: globalThis.fetch)
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = Object.assign({
      transport: typeof EventSource === 'function' ? 'eventsource' : 'fetch',
      token: '',
      tokenIn: 'query',
      tokenParam: 'token',
      lastEventIdParam: 'last_event_id',
      withCredentials: false,
      lastEventId: '',
      topics: [],
      minDelayMs: 1000,
      maxDelayMs: 30000,
      idleTimeoutMs: 75000,
      stopOn: ['disconnect'],
      refreshOn: ['token_expired'],
      fetch: null,
    }, options);
    if (this.options.transport !== 'eventsource' && this.options.transport !== 'fetch') {
      throw new TypeError('transport must be "eventsource" or "fetch"');
    }
    this.lastEventId = this.options.lastEventId;
    this.topics = [];             // the stream's topics, as the hub last said
    this.retryMs = null;          // the server's last `retry:` (fetch only)
    this.state = 'closed';        // connecting | connected | reconnecting | closed
    this._handlers = new Map();   // event name -> Set of functions
    this._stateHandlers = new Set();
    this._attempt = 0;            // failures since the last successful open
    this._gen = 0;                // bumped on every attempt and on close()
    this._timer = null;
    this._idleTimer = null;
    this._source = null;          // EventSource
    this._abort = null;           // AbortController of the fetch attempt
    this._needFreshToken = false; // the next token() call says expired: true
    this._refused = false;        // a 401 already made us ask for a new token
  }

  /** Calls fn(message) for each event named `name` ('message' = unnamed).
   * message: {event, data (parsed JSON, else the text), raw, id}.
   * Returns a function that removes the handler. */
  on(name, fn) {
    if (!this._handlers.has(name)) {
      this._handlers.set(name, new Set());
      if (this._source) this._source.addEventListener(name, this._esListener);
    }
    this._handlers.get(name).add(fn);
    return () => this._handlers.get(name).delete(fn);
  }

  /** Calls fn({state, detail, waiting, delayMs, error}) on every change of
   * state: 'reconnecting' comes once with waiting true (the next attempt is
   * due in delayMs, error says why) and once more when that attempt starts. */
  onState(fn) {
    this._stateHandlers.add(fn);
    return () => this._stateHandlers.delete(fn);
  }

  connect() {
    if (this.state !== 'closed') return;
    this._attempt = 0;
    this._refused = false;
    this._open('connecting');
  }

  /** Opens a new stream at once, resuming from lastEventId (connect() when
   * closed): after changing options.token or other options. */
  reconnect() {
    if (this.state === 'closed') {
      this.connect();
      return;
    }
    this._open('reconnecting');
  }

  /** Closes the stream and stops reconnecting. */
  close(detail = 'closed') {
    this._teardown();
    this._setState('closed', { detail });
  }

  // ---- internals -----------------------------------------------------------

  _setState(state, extra = {}) {
    this.state = state;
    const info = Object.assign({ state, detail: '', waiting: false, delayMs: 0, error: null }, extra);
    this._stateHandlers.forEach((fn) => callHandler(fn, info));
  }

  // Keeps this.topics as the hub says: connected lists them (or has none),
  // subscribed and unsubscribed name what changed.
  _trackTopics(type, raw) {
    if (!TOPIC_EVENTS.includes(type)) return;
    const data = parseData(raw);
    const list = data && Array.isArray(data.topics) ? data.topics.map(String) : [];
    if (type === 'connected') this.topics = list;
    else if (type === 'subscribed') this.topics = this.topics.concat(list.filter((t) => !this.topics.includes(t)));
    else this.topics = this.topics.filter((t) => !list.includes(t));
  }

  _emit(type, raw, id) {
    this._trackTopics(type, raw);
    const set = this._handlers.get(type);
    if (set && set.size) {
      const msg = { event: type, data: parseData(raw), raw, id };
      set.forEach((fn) => callHandler(fn, msg));
    }
    const stop = this.options.stopOn.includes(type);
    if (!stop && this.options.refreshOn.includes(type) && typeof this.options.token === 'function') {
      // The hub ends this stream right after the event: reconnect now with
      // a new token; the id we have makes the hub replay what comes between.
      this._needFreshToken = true;
      this._open('reconnecting', type + ': getting a new token');
    } else if (stop || this.options.refreshOn.includes(type)) {
      const data = parseData(raw);
      const why = data && data.reason ? type + ': ' + data.reason : type;
      this.close('ended by the server (' + why + ')');
    }
  }

  _teardown() {
    this._gen++;
    clearTimeout(this._timer);
    clearTimeout(this._idleTimer);
    this._timer = null;
    this._idleTimer = null;
    if (this._source) {
      this._source.close();
      this._source = null;
    }
    if (this._abort) {
      this._abort.abort();
      this._abort = null;
    }
  }

  _touch(gen) {
    const ms = this.options.idleTimeoutMs;
    if (!ms) return;
    clearTimeout(this._idleTimer);
    this._idleTimer = setTimeout(() => {
      if (gen === this._gen) this._retry(null, 'nothing received for ' + ms / 1000 + ' s');
    }, ms);
  }

  async _token() {
    const t = this.options.token;
    const value = typeof t === 'function' ? await t({ expired: this._needFreshToken }) : t;
    return value ? String(value) : '';
  }

  async _open(state, detail) {
    this._teardown();
    const gen = this._gen;
    this._setState(state, { detail: detail || (state === 'reconnecting' ? 'trying again' : '') });
    let token;
    try {
      token = await this._token();
    } catch (e) {
      if (gen === this._gen) this._retry(new Error('no token: ' + (e && e.message)));
      return;
    }
    if (gen !== this._gen) return;
    this._needFreshToken = false;
    this._touch(gen);
    if (this.options.transport === 'fetch') this._openFetch(gen, token);
    else this._openEventSource(gen, token);
  }

  _opened() {
    this._attempt = 0;
    this._refused = false;
    this._setState('connected');
  }

  // Schedules the next attempt. err: an SSEHttpError, another Error, or null
  // when the stream simply ended (then the server's retry: applies).
  _retry(err, detail) {
    if (err instanceof SSEHttpError && err.status === 401 && !this._refused &&
        typeof this.options.token === 'function') {
      // Expired (or revoked) between two attempts: one new token, at once.
      this._refused = true;
      this._needFreshToken = true;
      this._open('reconnecting', 'refused (' + err.message + '): getting a new token');
      return;
    }
    if (err instanceof SSEHttpError && PERMANENT_STATUS.has(err.status)) {
      this._teardown();
      this._setState('closed', { detail: 'refused (' + err.message + ')', error: err });
      return;
    }
    this._teardown();
    let delay;
    if (err === null && this._attempt === 0) {
      // A stream that was open ended: come back after the server's retry:
      // (ssehub spreads it at random when it stops). EventSource does not
      // show retry:, so spread the first attempt here instead.
      const min = this.options.minDelayMs;
      delay = this.retryMs !== null ? this.retryMs : Math.round(min / 2 + Math.random() * min / 2);
    } else {
      const cap = Math.min(this.options.maxDelayMs,
                           this.options.minDelayMs * Math.pow(2, this._attempt));
      delay = Math.round(cap / 2 + Math.random() * cap / 2);
      this._attempt++;
    }
    const gen = this._gen;
    this._timer = setTimeout(() => {
      if (gen === this._gen) this._open('reconnecting');
    }, delay);
    this._setState('reconnecting', {
      detail: detail || (err ? err.message : 'stream ended'),
      waiting: true,
      delayMs: delay,
      error: err,
    });
  }

  _absoluteUrl(params) {
    const base = typeof location !== 'undefined' ? location.href : undefined;
    const u = new URL(this.url, base);
    (this.options.topics || []).forEach((t) => u.searchParams.append('topic', t));
    Object.entries(params).forEach(([k, v]) => { if (v) u.searchParams.set(k, v); });
    return u.toString();
  }

  // -- fetch transport ------------------------------------------------------

  async _openFetch(gen, token) {
    const doFetch = this.options.fetch || globalThis.fetch.bind(globalThis);
    const headers = { Accept: 'text/event-stream' };
    if (token) headers.Authorization = 'Bearer ' + token;
    if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
    const abort = new AbortController();
    this._abort = abort;
    try {
      const res = await doFetch(this._absoluteUrl({}), {
        headers,
        cache: 'no-store',
        credentials: this.options.withCredentials ? 'include' : 'same-origin',
        signal: abort.signal,
      });
      if (gen !== this._gen) return;
      const type = res.headers.get('Content-Type') || '';
      if (res.status !== 200 || !type.startsWith('text/event-stream')) {
        throw res.status === 200 ? new SSEHttpError(200, 'not_a_stream', 'Content-Type ' + type)
                                 : await httpErrorOf(res);
      }
      this._opened();
      const parser = new SSEParser(
        (ev) => { if (gen === this._gen) this._onParsed(ev); },
        (ms) => { this.retryMs = ms; },
        this.lastEventId);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();   // UTF-8; a character split across reads is kept
      for (;;) {
        const { value, done } = await reader.read();
        if (gen !== this._gen) return;
        if (done) break;
        this._touch(gen);
        parser.push(decoder.decode(value, { stream: true }));
      }
      parser.push(decoder.decode());
      if (gen === this._gen) this._retry(null, 'the server ended the stream');
    } catch (e) {
      if (gen !== this._gen) return;    // aborted by close() or a newer attempt
      this._retry(e instanceof SSEHttpError ? e : new Error('network error: ' + e.message));
    }
  }

  _onParsed(ev) {
    this.lastEventId = ev.lastEventId;
    this._emit(ev.type, ev.data, ev.lastEventId);
  }

  // -- EventSource transport ------------------------------------------------

  _openEventSource(gen, token) {
    const o = this.options;
    const params = {};
    if (o.tokenIn === 'query') params[o.tokenParam] = token;
    // A new EventSource cannot send Last-Event-ID: ssehub takes it from the query.
    params[o.lastEventIdParam] = this.lastEventId;
    const url = this._absoluteUrl(params);
    const source = new EventSource(url, { withCredentials: o.withCredentials });
    this._source = source;
    this._esListener = (e) => {
      if (gen !== this._gen) return;
      this._touch(gen);
      // connected and ping carry no id: e.lastEventId then repeats the last one.
      // EventSource reports only events it has listeners for, so an unhandled
      // event's id is never seen here: a resume may replay it, unhandled again.
      if (e.lastEventId) this.lastEventId = e.lastEventId;
      this._emit(e.type, e.data, e.lastEventId);
    };
    const names = new Set(['message', 'ping', ...TOPIC_EVENTS, ...o.stopOn, ...o.refreshOn,
                           ...this._handlers.keys()]);
    names.forEach((name) => source.addEventListener(name, this._esListener));
    source.onopen = () => { if (gen === this._gen) this._opened(); };
    source.onerror = () => {
      if (gen !== this._gen) return;
      const wasOpen = this.state === 'connected';
      source.close();
      this._source = null;
      if (wasOpen) {
        this._retry(null, 'the stream ended');
        return;
      }
      // Never opened: EventSource hides the status. Ask once with fetch, to
      // tell a bad token (stop) from a hub that is down (retry).
      this._probe(gen, url);
    };
  }

  async _probe(gen, url) {
    const abort = new AbortController();
    this._abort = abort;
    let err;
    try {
      const doFetch = this.options.fetch || globalThis.fetch.bind(globalThis);
      const res = await doFetch(url, {
        cache: 'no-store',
        credentials: this.options.withCredentials ? 'include' : 'same-origin',
        signal: abort.signal,
      });
      err = res.status === 200 ? new Error('the stream failed') : await httpErrorOf(res);
      abort.abort();                   // never keep a second stream open
    } catch (e) {
      err = new Error('network error: ' + e.message);
    }
    if (gen === this._gen) this._retry(err);
  }
}
