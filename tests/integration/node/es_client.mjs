// An independent SSE client for the ssehub integration tests: the npm
// `eventsource` package (a WHATWG EventSource for Node), pointed at nginx.
//
//   node es_client.mjs URL EVENT[,EVENT...] [LIMIT_SECONDS]
//
// Records every dispatched event of the named types (id, type, data) and
// every `connected` event, and prints progress lines as JSON on stdout:
//   {"kind":"open"}  {"kind":"connected","data":{...}}  {"kind":"error",...}
// When a line arrives on stdin (or stdin closes, or LIMIT_SECONDS pass) it
// prints {"kind":"result", ...} and exits 0.
//
// EventSource reconnects by itself (with Last-Event-ID) when a response
// ends; it gives up for good on a non-200 answer (WHATWG "fail the
// connection"), e.g. nginx's 502 while the hub is restarting. Like a real
// application, this script then opens a new EventSource itself, passing the
// last id it saw as ?last_event_id=. Both paths are counted in the result.
import { EventSource } from 'eventsource';
import readline from 'node:readline';

const [url, eventArg, limitArg] = process.argv.slice(2);
if (!url || !eventArg) {
  process.stderr.write('usage: node es_client.mjs URL EVENT[,EVENT...] [LIMIT_SECONDS]\n');
  process.exit(2);
}
const events = eventArg.split(',');
const limit = Number(limitArg || 60);

const messages = [];
const connected = [];
const errors = [];
let opens = 0;
let recreated = 0;
let lastId = '';
let es = null;
let finished = false;

function line(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function open(withLastId) {
  let target = url;
  if (withLastId && lastId) {
    target += (url.includes('?') ? '&' : '?') + 'last_event_id=' + encodeURIComponent(lastId);
  }
  const source = new EventSource(target);
  es = source;
  source.addEventListener('open', () => {
    opens += 1;
    line({ kind: 'open', n: opens });
  });
  source.addEventListener('connected', (ev) => {
    let data = null;
    try { data = JSON.parse(ev.data); } catch (e) { data = ev.data; }
    connected.push(data);
    line({ kind: 'connected', data });
  });
  for (const name of events) {
    source.addEventListener(name, (ev) => {
      messages.push({ id: ev.lastEventId, type: ev.type, data: ev.data });
      if (ev.lastEventId) lastId = ev.lastEventId;
      line({ kind: 'message', id: ev.lastEventId, n: messages.length });
    });
  }
  source.addEventListener('error', (ev) => {
    const closed = source.readyState === source.CLOSED;
    errors.push({ code: ev.code ?? null, message: ev.message ?? null, closed });
    line({ kind: 'error', code: ev.code ?? null, message: ev.message ?? null, closed });
    if (closed && !finished && es === source) {
      // the browser would stay closed here; an application reconnects
      setTimeout(() => {
        if (!finished && es === source) {
          recreated += 1;
          open(true);
        }
      }, 200);
    }
  });
}

function finish(why) {
  if (finished) return;
  finished = true;
  if (es) es.close();
  line({ kind: 'result', why, messages, connected, errors, opens, recreated, lastId });
  process.exit(0);
}

open(false);
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', () => finish('stdin'));
rl.on('close', () => finish('stdin closed'));
setTimeout(() => finish('time limit'), limit * 1000);
