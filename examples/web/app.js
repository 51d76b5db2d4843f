// ssehub demo page: one EventSource on /sse/stream, an admin panel for the
// publish API, and the stats table. Plain browser JavaScript, no build step.
//
// Tokens come from the URL hash (#token=...&admin=...): the hash never leaves
// the browser, unlike a query string. EventSource cannot send headers, so the
// stream token goes in the `token` query parameter; admin calls use
// `Authorization: Bearer`. Nothing is stored in localStorage.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);

  const LOG_LIMIT = 500;
  const STATS_INTERVAL_MS = 2000;
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  // Events ssehub itself sends, plus the unnamed default ("message").
  const BUILTIN_EVENTS = ['connected', 'ping', 'disconnect', 'token_expired', 'message'];

  const ui = {
    status: $('status'),
    statusDetail: $('status-detail'),
    factUser: $('fact-user'),
    factClient: $('fact-client'),
    factLastId: $('fact-last-id'),
    factPing: $('fact-ping'),
    streamForm: $('stream-form'),
    streamToken: $('stream-token'),
    extraEvents: $('extra-events'),
    disconnect: $('disconnect'),
    showPings: $('show-pings'),
    log: $('log'),
    clearLog: $('clear-log'),
    adminToken: $('admin-token'),
    broadcastForm: $('broadcast-form'),
    userForm: $('user-form'),
    sendResult: $('send-result'),
    statsUpdated: $('stats-updated'),
    statsError: $('stats-error'),
    statsUsers: $('stats-users'),
    statsTotal: $('stats-total'),
  };

  // ---- small helpers -----------------------------------------------------

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

  // ---- status and log ----------------------------------------------------

  // state: 'connecting' | 'connected' | 'reconnecting' | 'closed'
  function setStatus(state, detail) {
    ui.status.textContent = state;
    ui.status.className = 'status ' + state;
    ui.statusDetail.textContent = detail || '';
  }

  function addLogEntry(kind, name, fields) {
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

    ui.log.insertBefore(li, ui.log.firstChild);
    while (ui.log.childElementCount > LOG_LIMIT) {
      ui.log.removeChild(ui.log.lastChild);
    }
  }

  function logNote(text) {
    addLogEntry('note', '·', { text: text });
  }

  // ---- the stream --------------------------------------------------------

  const stream = {
    source: null,        // the current EventSource, or null
    wanted: false,       // false once the user or the server closed it
    retryTimer: null,
    backoffMs: BACKOFF_MIN_MS,
    token: '',           // the token lastEventId belongs to
    lastEventId: '',     // id of the last real message (never connected/ping)
    listened: new Set(BUILTIN_EVENTS),
  };

  function onStreamEvent(e) {
    let data = null;
    try {
      data = JSON.parse(e.data);
    } catch (err) {
      data = e.data;
    }

    switch (e.type) {
      case 'connected':
        ui.factClient.textContent = data && data.client_id ? data.client_id : '?';
        setStatus('connected', 'since ' + timeOfDay());
        stream.backoffMs = BACKOFF_MIN_MS;
        if (data && data.resumed === false) {
          logNote('server did not know last event id ' + stream.lastEventId +
                  ' (too old, or ssehub restarted): some events may be missing');
        }
        addLogEntry('builtin', e.type, { text: e.data });
        return;
      case 'ping':
        ui.factPing.textContent = timeOfDay();
        if (ui.showPings.checked) addLogEntry('ping', e.type, { text: e.data });
        return;
      case 'disconnect':
      case 'token_expired': {
        addLogEntry('builtin', e.type, { text: e.data });
        // The server ended the stream on purpose: reconnecting would only be
        // refused again (or log the user back in), so stop here.
        const why = e.type === 'token_expired'
          ? 'token expired: get a new token and reconnect'
          : 'closed by the server' + (data && data.reason ? ': ' + data.reason : '');
        closeStream(why);
        return;
      }
      default:
        if (e.lastEventId) {
          stream.lastEventId = e.lastEventId;
          ui.factLastId.textContent = e.lastEventId;
        }
        addLogEntry('message', e.type, { id: e.lastEventId, text: e.data });
    }
  }

  function listenFor(name) {
    if (!stream.listened.has(name)) {
      stream.listened.add(name);
      if (stream.source) stream.source.addEventListener(name, onStreamEvent);
    }
  }

  function clearRetry() {
    if (stream.retryTimer !== null) {
      clearTimeout(stream.retryTimer);
      stream.retryTimer = null;
    }
  }

  function dropSource() {
    if (stream.source) {
      stream.source.close();
      stream.source = null;
    }
  }

  function closeStream(detail) {
    stream.wanted = false;
    clearRetry();
    dropSource();
    setStatus('closed', detail);
  }

  function streamUrl(token) {
    let url = '/sse/stream?token=' + encodeURIComponent(token);
    // The browser sends Last-Event-ID itself when *it* reconnects; a new
    // EventSource starts without one, so pass it as a query parameter and
    // ssehub replays what we missed.
    if (stream.lastEventId) url += '&last_event_id=' + encodeURIComponent(stream.lastEventId);
    return url;
  }

  function openStream(isRetry) {
    clearRetry();
    dropSource();
    const token = ui.streamToken.value.trim();
    if (!token) {
      closeStream('no stream token: open this page as …/#token=<JWT>');
      return;
    }
    if (token !== stream.token) {
      // Another identity: the previous stream's position means nothing.
      stream.token = token;
      stream.lastEventId = '';
      ui.factLastId.textContent = '–';
    }
    splitNames(ui.extraEvents.value).forEach(listenFor);

    stream.wanted = true;
    setStatus(isRetry ? 'reconnecting' : 'connecting');
    const source = new EventSource(streamUrl(token));
    stream.source = source;
    stream.listened.forEach((name) => source.addEventListener(name, onStreamEvent));

    source.onerror = () => {
      if (stream.source !== source) return;
      if (source.readyState === EventSource.CONNECTING) {
        // Network error or the stream ended: the browser retries by itself
        // after the server's `retry:` delay, sending Last-Event-ID.
        setStatus('reconnecting', 'the browser retries on its own');
        return;
      }
      // CLOSED: the browser gave up for good. It does that on any answer
      // other than 200 text/event-stream, such as 401 (bad token) or a 502
      // from the front server while ssehub restarts. Find out which.
      dropSource();
      diagnose(token);
    };
  }

  // Ask the same URL once with fetch() to learn the status and ssehub's
  // error code, then either retry with backoff or stop for good.
  async function diagnose(token) {
    let status = 0;
    let error = null;
    const abort = new AbortController();
    try {
      const res = await fetch(streamUrl(token), {
        cache: 'no-store',
        signal: abort.signal,
      });
      status = res.status;
      if (status === 200) {
        abort.abort();          // a working stream: do not keep it open twice
      } else {
        const body = await res.json().catch(() => null);
        error = body && body.error ? body.error : null;
      }
    } catch (e) {
      status = 0;               // network error: server or front server down
    }
    if (!stream.wanted) return; // closed meanwhile

    const what = error ? error.code + ': ' + error.message : (status ? 'HTTP ' + status : 'no answer');
    const permanent = status === 400 || status === 401 || status === 403 || status === 404;
    if (permanent) {
      logNote('stream refused (' + what + ')');
      closeStream('stream refused: ' + what);
      return;
    }
    const delay = stream.backoffMs;
    stream.backoffMs = Math.min(stream.backoffMs * 2, BACKOFF_MAX_MS);
    logNote('stream failed (' + what + '), new attempt in ' + delay / 1000 + ' s');
    setStatus('reconnecting', what + '; next attempt at ' + timeOfDay(new Date(Date.now() + delay)));
    stream.retryTimer = setTimeout(() => openStream(true), delay);
  }

  // ---- admin API ---------------------------------------------------------

  async function callApi(method, path, body) {
    const token = ui.adminToken.value.trim();
    if (!token) throw new Error('paste an admin token first (or open the page with #admin=<JWT>)');
    const init = {
      method: method,
      headers: { Authorization: 'Bearer ' + token },
      cache: 'no-store',
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const json = await res.json().catch(() => null);
    if (!res.ok || !json || json.success !== true) {
      const err = json && json.error ? json.error.code + ': ' + json.error.message : 'no JSON answer';
      throw new Error('HTTP ' + res.status + ' ' + err);
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
    // Make sure this page shows the event it is about to send.
    listenFor(event);
    return { event: event, data: data };
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
    publish('/api/sse/broadcast', ui.broadcastForm, id ? { id: id } : {});
  });

  ui.userForm.addEventListener('submit', (e) => {
    e.preventDefault();
    publish('/api/sse/send-to-user', ui.userForm,
            { user_id: ui.userForm.elements.user_id.value.trim() });
  });

  // ---- stats -------------------------------------------------------------

  let statsBusy = false;

  function renderStats(data) {
    ui.statsTotal.textContent = String(data.total_clients);
    const users = Object.entries(data.user_clients || {})
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const rows = users.map(([user, count]) => {
      const tr = document.createElement('tr');
      const name = document.createElement('td');
      name.textContent = user;
      const n = document.createElement('td');
      n.textContent = String(count);
      tr.append(name, n);
      return tr;
    });
    ui.statsUsers.replaceChildren(...rows);
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
      renderStats(await callApi('GET', '/api/sse/stats'));
      ui.statsError.hidden = true;
      ui.statsUpdated.textContent = 'updated ' + timeOfDay();
    } catch (e) {
      ui.statsError.hidden = false;
      ui.statsError.textContent = e.message;
    } finally {
      statsBusy = false;
    }
  }

  // ---- wiring ------------------------------------------------------------

  // Shows whose stream this is; returns the user id, or null.
  function showUser() {
    const user = userOfClaims(jwtClaims(ui.streamToken.value.trim()));
    ui.factUser.textContent = user === null ? '–' : user;
    return user;
  }

  function applyHash() {
    const params = hashParams();
    if (params.has('token')) ui.streamToken.value = params.get('token');
    if (params.has('admin')) ui.adminToken.value = params.get('admin');
    const user = showUser();
    if (user !== null && !ui.userForm.elements.user_id.value) {
      ui.userForm.elements.user_id.value = user;
    }
  }

  ui.streamForm.addEventListener('submit', (e) => {
    e.preventDefault();
    stream.backoffMs = BACKOFF_MIN_MS;
    showUser();
    openStream(false);
  });

  ui.disconnect.addEventListener('click', () => closeStream('closed by you'));
  ui.clearLog.addEventListener('click', () => ui.log.replaceChildren());
  ui.adminToken.addEventListener('change', refreshStats);

  window.addEventListener('hashchange', () => {
    applyHash();
    stream.backoffMs = BACKOFF_MIN_MS;
    openStream(false);
    refreshStats();
  });

  applyHash();
  openStream(false);
  refreshStats();
  setInterval(refreshStats, STATS_INTERVAL_MS);
})();
