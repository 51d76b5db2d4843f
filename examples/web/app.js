// ssehub demo page: the same stream through the two transports of
// ssehub-client side by side (EventSource, and fetch() with an Authorization
// header), an admin panel for the publish API, a live chart of /metrics and
// the stats table. Plain browser JavaScript, no build step.
//
// The client is the npm package in clients/js (ssehub-client): the page
// imports it from ./ssehub-client/, which the web server maps to that
// folder (scripts/demo.sh assembles the web root; by hand, copy clients/js
// there: examples/nginx/README.md).
//
// Topics: #topics=demo/news,rooms/ops subscribes both panels at connect (the
// stream token's topics claim must allow them; scripts/demo.sh mints alice
// and bob with "demo/*"); the admin panel publishes to a topic and
// subscribes live streams, and the stats list streams per topic.
//
// Tokens come from the URL hash (#token=...&admin=...&hub=...): the hash never
// leaves the browser, unlike a query string. Nothing is stored in
// localStorage. `hub` is the hub's origin when it is not this site (the front
// server must then answer CORS, see examples/nginx/ssehub.conf).
import { SSEClient } from './ssehub-client/index.js';

const $ = (id) => document.getElementById(id);

const LOG_LIMIT = 300;
const STATS_INTERVAL_MS = 2000;
const CHART_INTERVAL_MS = 1000;
const CHART_POINTS = 60;
// Events ssehub itself sends, plus the unnamed default ("message").
const BUILTIN_EVENTS = ['connected', 'ping', 'disconnect', 'token_expired', 'subscribed', 'unsubscribed', 'message'];

const ui = {
  tokensForm: $('tokens-form'),
  streamToken: $('stream-token'),
  adminToken: $('admin-token'),
  hub: $('hub'),
  topics: $('topics'),
  factUser: $('fact-user'),
  extraEvents: $('extra-events'),
  closeAll: $('close-all'),
  showPings: $('show-pings'),
  clearLogs: $('clear-logs'),
  esTokenIn: $('es-token-in'),
  broadcastForm: $('broadcast-form'),
  userForm: $('user-form'),
  topicForm: $('topic-form'),
  subscribeForm: $('subscribe-form'),
  sendResult: $('send-result'),
  statsUpdated: $('stats-updated'),
  statsError: $('stats-error'),
  statsUsers: $('stats-users'),
  statsTotal: $('stats-total'),
  statsTopics: $('stats-topics'),
  chart: $('chart'),
  chartSource: $('chart-source'),
  chartConn: $('chart-conn'),
  chartRate: $('chart-rate'),
};

// ---- small helpers -------------------------------------------------------

function timeOfDay(date) {
  return (date || new Date()).toLocaleTimeString([], { hour12: false });
}

function hashParams() {
  return new URLSearchParams(window.location.hash.replace(/^#/, ''));
}

// The claims of a JWT, for display only (the server does the verifying).
function jwtClaims(token) {
  try {
    const part = token.split('.')[1];
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    return null;
  }
}

function userOfClaims(claims) {
  if (!claims) return null;
  const id = claims.user_id !== undefined ? claims.user_id : claims.sub;
  return id === undefined || id === null ? null : String(id);
}

function splitNames(text) {
  return text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

function streamToken() {
  return ui.streamToken.value.trim();
}

// An absolute URL on the hub (this site when the hub field is empty).
function hubUrl(path) {
  const hub = ui.hub.value.trim().replace(/\/+$/, '');
  return new URL(hub ? hub + path : path, window.location.href).toString();
}

function hubIsCrossOrigin() {
  return new URL(hubUrl('/')).origin !== window.location.origin;
}

// ---- the two stream panels ------------------------------------------------

// Event names the clients listen for: the built-in ones, the "also listen
// for" field and the events this page sends.
const listened = new Set(BUILTIN_EVENTS);

function makePanel(prefix, transport) {
  return {
    transport,
    client: null,
    token: '',          // the token lastEventId belongs to
    lastEventId: '',
    ui: {
      status: $(prefix + '-status'),
      detail: $(prefix + '-detail'),
      client: $(prefix + '-client'),
      topics: $(prefix + '-topics'),
      lastId: $(prefix + '-last-id'),
      ping: $(prefix + '-ping'),
      log: $(prefix + '-log'),
      connect: $(prefix + '-connect'),
      close: $(prefix + '-close'),
    },
  };
}

const panels = [makePanel('es', 'eventsource'), makePanel('fx', 'fetch')];

function addLogEntry(panel, kind, name, fields) {
  const li = document.createElement('li');
  li.className = 'entry ' + kind;

  const time = document.createElement('span');
  time.className = 'time';
  time.textContent = timeOfDay();
  li.appendChild(time);

  const ev = document.createElement('span');
  ev.className = 'event';
  ev.textContent = name;
  li.appendChild(ev);

  if (fields.id) {
    const id = document.createElement('span');
    id.className = 'id';
    id.textContent = 'id ' + fields.id;
    li.appendChild(id);
  }
  if (fields.text !== undefined) {
    const data = document.createElement('code');
    data.className = 'data';
    data.textContent = fields.text;
    li.appendChild(data);
  }

  const log = panel.ui.log;
  log.insertBefore(li, log.firstChild);
  while (log.childElementCount > LOG_LIMIT) log.removeChild(log.lastChild);
}

function logNote(panel, text) {
  addLogEntry(panel, 'note', '·', { text });
}

function setStatus(panel, state, detail) {
  panel.ui.status.textContent = state;
  panel.ui.status.className = 'status ' + state;
  panel.ui.detail.textContent = detail || '';
}

function showTopics(panel) {
  const list = panel.client ? panel.client.topics : [];
  panel.ui.topics.textContent = list.length ? list.join(', ') : '–';
}

function onStreamEvent(panel, msg) {
  const data = msg.data;
  switch (msg.event) {
    case 'subscribed':
    case 'unsubscribed':
      // the back end changed this stream's topics (client.topics follows)
      showTopics(panel);
      addLogEntry(panel, 'builtin', msg.event, { text: msg.raw });
      return;
    case 'connected':
      panel.ui.client.textContent = data && data.client_id ? data.client_id : '?';
      showTopics(panel);
      if (data && data.resumed === false) {
        logNote(panel, 'the hub did not know last event id ' + panel.lastEventId +
                ' (too old, or ssehub restarted without its history file): events may be missing');
      }
      addLogEntry(panel, 'builtin', msg.event, { text: msg.raw });
      return;
    case 'ping':
      panel.ui.ping.textContent = timeOfDay();
      if (ui.showPings.checked) addLogEntry(panel, 'ping', msg.event, { text: msg.raw });
      return;
    case 'disconnect':
    case 'token_expired':
      // disconnect closes the client (its stopOn option); after
      // token_expired it asks streamToken() for a new token and reconnects,
      // which fails with 401 and closes when the field still holds the old
      // one: paste a new token, then connect.
      addLogEntry(panel, 'builtin', msg.event, { text: msg.raw });
      return;
    default:
      if (msg.id) {
        panel.lastEventId = msg.id;
        panel.ui.lastId.textContent = msg.id;
      }
      addLogEntry(panel, 'message', msg.event, { id: msg.id, text: msg.raw });
  }
}

function onStateChange(panel, info) {
  switch (info.state) {
    case 'connected':
      setStatus(panel, 'connected', 'since ' + timeOfDay());
      return;
    case 'reconnecting': {
      if (!info.waiting) {
        setStatus(panel, 'reconnecting', info.detail + '…');
        return;
      }
      const seconds = (info.delayMs / 1000).toFixed(1);
      setStatus(panel, 'reconnecting', info.detail + '; next attempt in ' + seconds + ' s');
      logNote(panel, info.detail + ', next attempt in ' + seconds + ' s');
      return;
    }
    case 'closed':
      setStatus(panel, 'closed', info.detail);
      if (info.error || /server/.test(info.detail)) logNote(panel, info.detail);
      return;
    default:
      setStatus(panel, info.state, info.detail);
  }
}

// The EventSource panel's cookie mode. A real application sets this cookie
// from its server at login (HttpOnly; Secure; SameSite=Lax, Domain= the
// common parent when the hub is on a sibling host); the demo sets it from
// JavaScript. Path /sse/: it goes with stream requests only.
function setTokenCookie(token) {
  const secure = window.location.protocol === 'https:' ? '; Secure' : '';
  document.cookie = token
    ? 'token=' + token + '; path=/sse/; SameSite=Strict' + secure
    : 'token=; path=/sse/; max-age=0';
}

function stopPanel(panel, detail) {
  if (panel.client) {
    panel.client.close(detail);
    panel.client = null;
  }
  showTopics(panel);
  if (panel.transport === 'eventsource') setTokenCookie('');
}

function startPanel(panel) {
  stopPanel(panel);
  const token = streamToken();
  if (!token) {
    setStatus(panel, 'closed', 'no stream token: open this page as …/#token=<JWT>');
    return;
  }
  if (token !== panel.token) {
    // Another identity: the previous stream's position means nothing.
    panel.token = token;
    panel.lastEventId = '';
    panel.ui.lastId.textContent = '–';
  }
  const options = {
    transport: panel.transport,
    token: streamToken,
    lastEventId: panel.lastEventId,
    topics: splitNames(ui.topics.value),
  };
  if (panel.transport === 'eventsource') {
    options.tokenIn = ui.esTokenIn.value;
    if (options.tokenIn === 'cookie') {
      setTokenCookie(token);
      options.withCredentials = hubIsCrossOrigin();
    }
  }
  const client = new SSEClient(hubUrl('/sse/stream'), options);
  client.onState((info) => { if (panel.client === client) onStateChange(panel, info); });
  listened.forEach((name) => client.on(name, (msg) => onStreamEvent(panel, msg)));
  panel.client = client;
  client.connect();
}

function listenFor(name) {
  if (listened.has(name)) return;
  listened.add(name);
  panels.forEach((panel) => {
    if (panel.client) panel.client.on(name, (msg) => onStreamEvent(panel, msg));
  });
}

panels.forEach((panel) => {
  panel.ui.connect.addEventListener('click', () => startPanel(panel));
  panel.ui.close.addEventListener('click', () => stopPanel(panel, 'closed by you'));
});

ui.esTokenIn.addEventListener('change', () => startPanel(panels[0]));

// ---- admin API -------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function callApi(method, path, body) {
  const token = ui.adminToken.value.trim();
  if (!token) throw new ApiError(0, 'paste an admin token first (or open the page with #admin=<JWT>)');
  const init = { method, headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(hubUrl(path), init);
  const json = await res.json().catch(() => null);
  if (!res.ok || !json || json.success !== true) {
    const err = json && json.error ? json.error.code + ': ' + json.error.message : 'no JSON answer';
    throw new ApiError(res.status, 'HTTP ' + res.status + ' ' + err);
  }
  return json.data;
}

function showResult(text, isError) {
  ui.sendResult.textContent = timeOfDay() + '  ' + text;
  ui.sendResult.className = 'result' + (isError ? ' error' : '');
}

// Reads the common fields of a publish form; throws on bad JSON.
function messageFromForm(form) {
  const event = form.elements.event.value.trim();
  let data;
  try {
    data = JSON.parse(form.elements.data.value);
  } catch (e) {
    throw new Error('data is not valid JSON: ' + e.message);
  }
  listenFor(event);   // show the event this page is about to send
  return { event, data };
}

async function publish(path, form, extra) {
  try {
    const body = Object.assign(messageFromForm(form), extra);
    const data = await callApi('POST', path, body);
    showResult(path + ' → id ' + data.id + ', ' + data.recipients + ' recipient(s)', false);
  } catch (e) {
    showResult(path + ' → ' + e.message, true);
  }
}

ui.broadcastForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const id = ui.broadcastForm.elements.id.value.trim();
  publish('/api/sse/broadcast', ui.broadcastForm, id ? { id } : {});
});

ui.userForm.addEventListener('submit', (e) => {
  e.preventDefault();
  publish('/api/sse/send-to-user', ui.userForm, { user_id: ui.userForm.elements.user_id.value.trim() });
});

ui.topicForm.addEventListener('submit', (e) => {
  e.preventDefault();
  publish('/api/sse/publish', ui.topicForm, { topic: ui.topicForm.elements.topic.value.trim() });
});

ui.subscribeForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const action = e.submitter && e.submitter.value === 'unsubscribe' ? 'unsubscribe' : 'subscribe';
  const path = '/api/sse/' + action;
  const body = {
    user_id: ui.subscribeForm.elements.user_id.value.trim(),
    topics: splitNames(ui.subscribeForm.elements.topics.value),
  };
  try {
    const data = await callApi('POST', path, body);
    showResult(path + ' → ' + data.recipients + ' stream(s) changed' +
               (data.skipped ? ', ' + data.skipped + ' at their topic limit' : ''), false);
  } catch (err) {
    showResult(path + ' → ' + err.message, true);
  }
});

// ---- stats -------------------------------------------------------------------

let statsBusy = false;

// Table rows for {name: count}, most streams first.
function countRows(counts) {
  return Object.entries(counts || {})
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([key, count]) => {
      const tr = document.createElement('tr');
      const name = document.createElement('td');
      name.textContent = key;
      const n = document.createElement('td');
      n.textContent = String(count);
      tr.append(name, n);
      return tr;
    });
}

function renderStats(data) {
  ui.statsTotal.textContent = String(data.total_clients);
  ui.statsUsers.replaceChildren(...countRows(data.user_clients));
  ui.statsTopics.replaceChildren(...countRows(data.topic_clients));
}

async function refreshStats() {
  if (statsBusy || document.hidden) return;
  if (!ui.adminToken.value.trim()) {
    ui.statsError.hidden = false;
    ui.statsError.textContent = 'stats need an admin token';
    return;
  }
  statsBusy = true;
  try {
    renderStats(await callApi('GET', '/api/sse/stats?topics=1'));
    ui.statsError.hidden = true;
    ui.statsUpdated.textContent = 'updated ' + timeOfDay();
  } catch (e) {
    ui.statsError.hidden = false;
    ui.statsError.textContent = e.message;
  } finally {
    statsBusy = false;
  }
}

// ---- live chart ----------------------------------------------------------------
// Active connections and messages per second over the last minute. From
// /metrics (admin token, or --metrics-public; the front server may also
// restrict it by address), else from /api/sse/stats, which has no message
// counter.

const chart = {
  points: [],           // {conn, rate}; rate null when unknown
  lastSent: null,       // {t, sent} of the previous /metrics sample
  metricsRefused: false, // /metrics said 401/403/404: use stats until the token changes
  busy: false,
};

function metricValue(text, name) {
  const m = new RegExp('^' + name + ' ([0-9.e+]+)$', 'm').exec(text);
  return m ? Number(m[1]) : null;
}

// One sample: {conn, sent (total messages sent, or null), source}.
async function sampleHub() {
  if (!chart.metricsRefused) {
    const token = ui.adminToken.value.trim();
    const res = await fetch(hubUrl('/metrics'), {
      headers: token ? { Authorization: 'Bearer ' + token } : {},
      cache: 'no-store',
    });
    if (res.ok) {
      const text = await res.text();
      const conn = metricValue(text, 'sse_active_connections');
      if (conn !== null) return { conn, sent: metricValue(text, 'sse_messages_sent_total'), source: '/metrics' };
    }
    if (res.status === 401 || res.status === 403 || res.status === 404) chart.metricsRefused = true;
  }
  const stats = await callApi('GET', '/api/sse/stats');
  return { conn: stats.total_clients, sent: null, source: '/api/sse/stats (no message rate)' };
}

async function chartTick() {
  if (chart.busy || document.hidden) return;
  chart.busy = true;
  try {
    const s = await sampleHub();
    const now = performance.now();
    let rate = null;
    if (s.sent !== null && chart.lastSent !== null && s.sent >= chart.lastSent.sent) {
      rate = (s.sent - chart.lastSent.sent) / ((now - chart.lastSent.t) / 1000);
    }
    chart.lastSent = s.sent !== null ? { t: now, sent: s.sent } : null;
    chart.points.push({ conn: s.conn, rate });
    ui.chartSource.textContent = 'from ' + s.source + ', last 60 s';
    ui.chartConn.textContent = String(s.conn);
    ui.chartRate.textContent = rate === null ? 'n/a' : rate.toFixed(1);
  } catch (e) {
    chart.points.push({ conn: null, rate: null });
    chart.lastSent = null;
    ui.chartSource.textContent = e instanceof ApiError ? e.message : 'hub unreachable';
    ui.chartConn.textContent = '–';
    ui.chartRate.textContent = '–';
  } finally {
    chart.busy = false;
  }
  while (chart.points.length > CHART_POINTS) chart.points.shift();
  drawChart();
}

// The smallest "nice" number (1, 2, 5 x 10^n) at or above v; at least 1.
function niceCeil(v) {
  if (!(v > 1)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  return [1, 2, 5, 10].map((m) => m * p).find((n) => n >= v);
}

function drawChart() {
  const canvas = ui.chart;
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const css = getComputedStyle(document.documentElement);
  const color = (name) => css.getPropertyValue(name).trim();
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);

  const pad = { left: 34, right: 34, top: 8, bottom: 18 };
  const pw = w - pad.left - pad.right;
  const ph = h - pad.top - pad.bottom;
  const pts = chart.points;
  const connMax = niceCeil(Math.max(0, ...pts.map((p) => p.conn || 0)));
  const rateMax = niceCeil(Math.max(0, ...pts.map((p) => p.rate || 0)));
  const step = pw / CHART_POINTS;
  const xOf = (i) => pad.left + pw - step / 2 - (pts.length - 1 - i) * step;   // newest on the right
  const yOf = (v, max) => pad.top + ph - (v / max) * ph;

  ctx.font = '11px system-ui, sans-serif';
  ctx.lineWidth = 1;
  ctx.strokeStyle = color('--line');
  ctx.fillStyle = color('--muted');
  for (let i = 0; i <= 4; i++) {
    const y = Math.round(pad.top + (ph * i) / 4) + 0.5;
    ctx.beginPath();
    ctx.moveTo(pad.left, y);
    ctx.lineTo(pad.left + pw, y);
    ctx.stroke();
  }
  ctx.textAlign = 'right';
  ctx.fillText(String(connMax), pad.left - 4, pad.top + 9);
  ctx.fillText('0', pad.left - 4, pad.top + ph);
  ctx.textAlign = 'left';
  ctx.fillText(String(rateMax), pad.left + pw + 4, pad.top + 9);
  ctx.fillText('0', pad.left + pw + 4, pad.top + ph);
  ctx.textAlign = 'center';
  ctx.fillText('−60 s', pad.left + 14, h - 4);
  ctx.fillText('now', pad.left + pw - 10, h - 4);

  // messages/s: bars against the right scale
  ctx.fillStyle = color('--rate');
  const bar = Math.max(1, step - 2);
  pts.forEach((p, i) => {
    if (p.rate === null || p.rate <= 0) return;
    const y = yOf(p.rate, rateMax);
    ctx.fillRect(xOf(i) - bar / 2, y, bar, pad.top + ph - y);
  });

  // active connections: a line against the left scale, broken by gaps
  ctx.strokeStyle = color('--ok');
  ctx.lineWidth = 2;
  ctx.beginPath();
  let drawing = false;
  pts.forEach((p, i) => {
    if (p.conn === null) {
      drawing = false;
      return;
    }
    const x = xOf(i);
    const y = yOf(p.conn, connMax);
    if (drawing) ctx.lineTo(x, y);
    else ctx.moveTo(x, y);
    drawing = true;
  });
  ctx.stroke();
}

// ---- wiring ------------------------------------------------------------------

function showUser() {
  const user = userOfClaims(jwtClaims(streamToken()));
  ui.factUser.textContent = user === null ? '' : '(user ' + user + ')';
  return user;
}

function applyHash() {
  const params = hashParams();
  if (params.has('token')) ui.streamToken.value = params.get('token');
  if (params.has('admin')) ui.adminToken.value = params.get('admin');
  if (params.has('hub')) ui.hub.value = params.get('hub');
  if (params.has('topics')) ui.topics.value = params.get('topics');
  const user = showUser();
  if (user !== null && !ui.userForm.elements.user_id.value) ui.userForm.elements.user_id.value = user;
  if (user !== null && !ui.subscribeForm.elements.user_id.value) ui.subscribeForm.elements.user_id.value = user;
}

function startAll() {
  splitNames(ui.extraEvents.value).forEach(listenFor);
  showUser();
  chart.metricsRefused = false;
  panels.forEach(startPanel);
}

ui.tokensForm.addEventListener('submit', (e) => {
  e.preventDefault();
  startAll();
  refreshStats();
});
ui.closeAll.addEventListener('click', () => panels.forEach((p) => stopPanel(p, 'closed by you')));
ui.clearLogs.addEventListener('click', () => panels.forEach((p) => p.ui.log.replaceChildren()));
ui.adminToken.addEventListener('change', () => {
  chart.metricsRefused = false;
  refreshStats();
});
window.addEventListener('hashchange', () => {
  applyHash();
  startAll();
  refreshStats();
});
window.addEventListener('resize', drawChart);

applyHash();
startAll();
refreshStats();
chartTick();
setInterval(refreshStats, STATS_INTERVAL_MS);
setInterval(chartTick, CHART_INTERVAL_MS);
