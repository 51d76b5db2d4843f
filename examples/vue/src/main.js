// The Vue 3 example: the useSSE composable from ssehub-client/vue in a
// component that can be mounted and unmounted, with the token (a ref: a
// change reconnects, resuming from the last event id) and the transport
// editable. Render functions instead of templates: Vue's runtime-only build
// runs under a strict Content-Security-Policy. Open it as /vue/#token=<JWT>.
import { createApp, defineComponent, h, ref } from 'vue';
import { useSSE } from 'ssehub-client/vue';

function titleOf(data) {
  return data && typeof data === 'object' && 'title' in data ? String(data.title) : JSON.stringify(data);
}

const Notifications = defineComponent({
  props: { token: { type: Object, required: true }, transport: { type: String, required: true } },
  setup(props) {
    const items = ref([]);
    const { state, error, lastEvent, clientId } = useSSE('/sse/stream', {
      transport: props.transport,
      token: props.token,
      events: {
        notification: (msg) => { items.value = [{ id: msg.id, title: titleOf(msg.data) }, ...items.value].slice(0, 50); },
      },
    });
    return () => h('section', [
      h('p', [
        'state ', h('strong', { id: 'state' }, state.value),
        ', client ', h('code', { id: 'client-id' }, clientId.value || '–'),
        ', last event ', h('code', { id: 'last-event' }, lastEvent.value ? lastEvent.value.event + ' ' + lastEvent.value.id : '–'),
      ]),
      error.value ? h('p', { id: 'error' }, error.value.message) : null,
      h('ol', { id: 'notifications' }, items.value.map((n) => h('li', { key: n.id, 'data-id': n.id }, n.title))),
    ]);
  },
});

const App = defineComponent({
  setup() {
    const hash = new URLSearchParams(window.location.hash.slice(1));
    const token = ref(hash.get('token') || '');
    const transport = ref(hash.get('transport') || 'fetch');
    const mounted = ref(true);
    return () => h('main', [
      h('h1', ['Vue ', h('code', 'useSSE')]),
      h('label', ['token ', h('input', {
        id: 'token', type: 'password', value: token.value,
        onInput: (e) => { token.value = e.target.value; },
      })]),
      ' ',
      h('label', ['transport ', h('select', {
        id: 'transport', value: transport.value,
        onChange: (e) => { transport.value = e.target.value; },
      }, ['fetch', 'eventsource'].map((t) => h('option', { value: t }, t)))]),
      ' ',
      h('button', { id: 'toggle', type: 'button', onClick: () => { mounted.value = !mounted.value; } },
        mounted.value ? 'unmount' : 'mount'),
      // A new transport is a new component (the composable reads it once).
      mounted.value ? h(Notifications, { key: transport.value, token, transport: transport.value })
                    : h('p', { id: 'unmounted' }, 'unmounted'),
    ]);
  },
});

createApp(App).mount('#root');
