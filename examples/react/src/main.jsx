// The React example: useSSE from ssehub-client/react in a component that
// can be mounted and unmounted, with the token and the transport editable
// (a change reconnects, resuming from the last event id). Open it as
// /react/#token=<JWT> (scripts/demo.sh prints the link).
import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { useSSE } from 'ssehub-client/react';

function Notifications({ token, transport }) {
  const [items, setItems] = useState([]);
  const { state, error, lastEvent, clientId } = useSSE('/sse/stream', {
    transport,
    token,
    events: {
      notification: (msg) => setItems((list) => [{ id: msg.id, title: titleOf(msg.data) }, ...list].slice(0, 50)),
    },
  });
  return (
    <section>
      <p>
        state <strong id="state">{state}</strong>, client <code id="client-id">{clientId || '–'}</code>,
        last event <code id="last-event">{lastEvent ? lastEvent.event + ' ' + lastEvent.id : '–'}</code>
      </p>
      {error && <p id="error">{error.message}</p>}
      <ol id="notifications">
        {items.map((n) => <li key={n.id} data-id={n.id}>{n.title}</li>)}
      </ol>
    </section>
  );
}

function titleOf(data) {
  return data && typeof data === 'object' && 'title' in data ? String(data.title) : JSON.stringify(data);
}

function App() {
  const hash = new URLSearchParams(window.location.hash.slice(1));
  const [token, setToken] = useState(hash.get('token') || '');
  const [transport, setTransport] = useState(hash.get('transport') || 'fetch');
  const [mounted, setMounted] = useState(true);
  return (
    <main>
      <h1>React <code>useSSE</code></h1>
      <label>token <input id="token" type="password" value={token} onChange={(e) => setToken(e.target.value)} /></label>
      {' '}
      <label>transport{' '}
        <select id="transport" value={transport} onChange={(e) => setTransport(e.target.value)}>
          <option value="fetch">fetch</option>
          <option value="eventsource">eventsource</option>
        </select>
      </label>
      {' '}
      <button id="toggle" type="button" onClick={() => setMounted((m) => !m)}>{mounted ? 'unmount' : 'mount'}</button>
      {mounted ? <Notifications token={token} transport={transport} /> : <p id="unmounted">unmounted</p>}
    </main>
  );
}

createRoot(document.getElementById('root')).render(<StrictMode><App /></StrictMode>);
