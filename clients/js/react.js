// ssehub-client/react: useSSE(url, options), one SSEClient (index.js) per
// mounted component. The stream opens on mount, closes on unmount, and is
// opened again when the URL, a string token or another option changes; a
// new token resumes from the last event id, so nothing is lost. React 18's
// StrictMode mounts twice in development: the first client is closed before
// it sends its request, so exactly one stream stays open.
//
//   const { state, lastEvent, error } = useSSE('/sse/stream', {
//     transport: 'fetch',
//     token: ({ expired }) => getJwt(expired),
//     events: { notification: (msg) => notify(msg.data) },
//   });
import { useCallback, useEffect, useRef, useState } from 'react';
import { SSEClient } from './index.js';

const IDLE = { state: 'closed', error: null, lastEvent: null, clientId: null, topics: [] };

// Events the hub sends for its own reasons: never a lastEvent.
const OWN_EVENTS = new Set(['connected', 'ping']);

/**
 * url: the stream URL; null, '' or enabled: false opens nothing.
 * options: SSEClient's options, plus
 *   events   {name: handler(message)}: handlers may change on every render
 *            without reconnecting (the latest one is called)
 *   listen   more event names that only update lastEvent
 *   enabled  false closes the stream (default true)
 * token: a string (a new one reconnects) or a function called before every
 * attempt (a new function does not reconnect; the latest one is called).
 * Returns {state, error, lastEvent, clientId, topics, close(), reconnect()};
 * topics is the stream's list as the hub says it (client.topics).
 */
export function useSSE(url, options = {}) {
  const { events, listen, enabled = true, token, ...clientOptions } = options;
  const [info, setInfo] = useState(IDLE);
  const clientRef = useRef(null);
  // Where the previous client of the same URL stopped: a client made for a
  // new token starts there.
  const resumeRef = useRef({ url: null, id: '' });
  const eventsRef = useRef(events);
  const tokenRef = useRef(token);
  eventsRef.current = events;
  tokenRef.current = token;

  const tokenKey = typeof token === 'function' ? '\0function' : String(token || '');
  const names = [...new Set(['message', ...Object.keys(events || {}), ...(listen || [])])].sort();
  const namesKey = names.join('\n');
  // Options are plain values (the fetch function aside): compared as JSON.
  const optionsKey = JSON.stringify(clientOptions);
  const urlKey = url ? String(url) : '';

  useEffect(() => {
    if (!urlKey || !enabled) {
      setInfo(IDLE);
      return undefined;
    }
    const resume = resumeRef.current;
    const client = new SSEClient(urlKey, Object.assign({}, clientOptions, {
      token: typeof tokenRef.current === 'function' ? (i) => tokenRef.current(i) : tokenRef.current,
      lastEventId: resume.url === urlKey && resume.id ? resume.id : (clientOptions.lastEventId || ''),
    }));
    clientRef.current = client;
    const offs = [];
    offs.push(client.onState((s) => {
      setInfo((prev) => ({
        state: s.state,
        error: s.state === 'connected' ? null : s.error || prev.error,
        lastEvent: prev.lastEvent,
        clientId: prev.clientId,
        topics: prev.topics,
      }));
    }));
    offs.push(client.on('connected', (msg) => {
      const id = msg.data && typeof msg.data === 'object' ? msg.data.client_id || null : null;
      setInfo((prev) => Object.assign({}, prev, { clientId: id, topics: client.topics }));
    }));
    ['subscribed', 'unsubscribed'].forEach((name) => offs.push(client.on(name, () => {
      setInfo((prev) => Object.assign({}, prev, { topics: client.topics }));
    })));
    namesKey.split('\n').forEach((name) => {
      offs.push(client.on(name, (msg) => {
        const fn = eventsRef.current && eventsRef.current[name];
        if (!OWN_EVENTS.has(name)) setInfo((prev) => Object.assign({}, prev, { lastEvent: msg }));
        if (typeof fn === 'function') fn(msg);
      }));
    });
    client.connect();
    return () => {
      // Handlers first: the closing client must not update a component
      // that is going away.
      offs.forEach((off) => off());
      resumeRef.current = { url: urlKey, id: client.lastEventId };
      client.close('unmounted');
      if (clientRef.current === client) clientRef.current = null;
    };
    // clientOptions and token are represented by optionsKey and tokenKey.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [urlKey, enabled, tokenKey, namesKey, optionsKey]);

  const close = useCallback(() => {
    if (clientRef.current) clientRef.current.close('closed by the application');
  }, []);
  const reconnect = useCallback(() => {
    if (clientRef.current) clientRef.current.reconnect();
  }, []);

  return {
    state: info.state, error: info.error, lastEvent: info.lastEvent, clientId: info.clientId, topics: info.topics,
    close, reconnect,
  };
}
