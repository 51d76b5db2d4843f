// ssehub-client/vue: the useSSE composable for Vue 3, one SSEClient
// (index.js) per component (or effect scope). The stream opens in setup(),
// closes when the scope ends (unmount), and is opened again when the URL, a
// token held in a ref or `enabled` changes; a new token resumes from the
// last event id, so nothing is lost.
//
//   const { state, lastEvent, error } = useSSE('/sse/stream', {
//     transport: 'fetch',
//     token: ({ expired }) => getJwt(expired),
//     events: { notification: (msg) => notify(msg.data) },
//   });
import { getCurrentScope, onScopeDispose, ref, shallowRef, toValue, watch } from 'vue';
import { SSEClient } from './index.js';

// Events the hub sends for its own reasons: never a lastEvent.
const OWN_EVENTS = new Set(['connected', 'ping']);

/**
 * url: a string, a ref or a getter; null or '' opens nothing.
 * options: SSEClient's options, plus
 *   token    a string, a ref of one (watched: a change reconnects), or a
 *            function called before every attempt (not watched)
 *   events   {name: handler(message)}
 *   listen   more event names that only update lastEvent
 *   enabled  a boolean, ref or getter (default true)
 * Returns refs {state, error, lastEvent, clientId, topics} and close(),
 * reconnect(); topics is the stream's list as the hub says it.
 */
export function useSSE(url, options = {}) {
  const { events, listen, enabled = true, token, ...clientOptions } = options;
  const state = ref('closed');
  const error = shallowRef(null);
  const lastEvent = shallowRef(null);
  const clientId = ref(null);
  const topics = shallowRef([]);
  const names = new Set(['message', ...Object.keys(events || {}), ...(listen || [])]);
  let client = null;
  let resume = { url: null, id: '' };   // where the last client of a URL stopped

  const tokenNow = () => (typeof token === 'function' ? token : toValue(token));

  function stop() {
    if (!client) return;
    const c = client;
    client = null;
    resume = { url: c.url, id: c.lastEventId };
    c.close('unmounted');
  }

  function start(u) {
    const t = tokenNow();
    const c = new SSEClient(u, Object.assign({}, clientOptions, {
      token: t,
      lastEventId: resume.url === u && resume.id ? resume.id : (clientOptions.lastEventId || ''),
    }));
    client = c;
    const mine = (fn) => (arg) => { if (client === c) fn(arg); };
    c.onState(mine((s) => {
      state.value = s.state;
      if (s.state === 'connected') error.value = null;
      else if (s.error) error.value = s.error;
    }));
    c.on('connected', mine((msg) => {
      clientId.value = msg.data && typeof msg.data === 'object' ? msg.data.client_id || null : null;
    }));
    ['connected', 'subscribed', 'unsubscribed'].forEach((name) => c.on(name, mine(() => {
      topics.value = c.topics;
    })));
    names.forEach((name) => c.on(name, mine((msg) => {
      if (!OWN_EVENTS.has(name)) lastEvent.value = msg;
      const fn = events && events[name];
      if (typeof fn === 'function') fn(msg);
    })));
    c.connect();
  }

  watch(
    () => [toValue(url) || '', typeof token === 'function' ? token : toValue(token) || '', toValue(enabled)],
    ([u, , on]) => {
      stop();
      if (!u || !on) {
        state.value = 'closed';
        return;
      }
      start(String(u));
    },
    { immediate: true },
  );
  if (getCurrentScope()) onScopeDispose(stop);

  return {
    state,
    error,
    lastEvent,
    clientId,
    topics,
    close: () => { if (client) client.close('closed by the application'); },
    reconnect: () => { if (client) client.reconnect(); },
  };
}
