// Uses every declaration of ssehub-client (clients/js/*.d.ts) the way an
// application would, through the package's "exports" (node_modules links to
// clients/js). `tsc --noEmit -p tests/clients` must pass: the declarations
// are valid and usable, and the misuses marked @ts-expect-error are errors.
import { SSEClient, SSEHttpError, SSEParser } from 'ssehub-client';
import type { SSEClientOptions, SSEMessage, SSEState, SSEStateInfo, SSETokenInfo } from 'ssehub-client';
import { useSSE as useReactSSE } from 'ssehub-client/react';
import type { UseSSEResult as ReactResult } from 'ssehub-client/react';
import { useSSE as useVueSSE } from 'ssehub-client/vue';
import { ref } from 'vue';

const options: SSEClientOptions = {
  transport: 'fetch',
  token: async ({ expired }: SSETokenInfo) => (expired ? 'fresh' : 'cached'),
  minDelayMs: 500,
  maxDelayMs: 10000,
  stopOn: ['disconnect'],
  refreshOn: ['token_expired'],
  topics: ['orders/42', 'rooms/ops'],
  fetch: globalThis.fetch,
};
const client = new SSEClient(new URL('https://hub.example/sse/stream'), options);
const off: () => void = client.on<{ title: string }>('notification', (m: SSEMessage<{ title: string }>) => {
  const title: string = m.data.title;
  const id: string = m.id;
  const raw: string = m.raw;
  return title + id + raw;
});
client.onState((s: SSEStateInfo) => {
  const state: SSEState = s.state;
  const delay: number = s.delayMs;
  if (s.error instanceof SSEHttpError) {
    const code: string = s.error.code;
    const status: number = s.error.status;
    return [state, delay, code, status];
  }
  return s.waiting;
});
client.connect();
client.options.token = 'another';
client.reconnect();
client.close('done');
off();
const resumeFrom: string = client.lastEventId;
const retry: number | null = client.retryMs;
const onTopics: string[] = client.topics;
client.options.topics = ['orders/43'];
// @ts-expect-error: the topics are the hub's to tell
client.topics = ['x'];
// @ts-expect-error: topics are names
new SSEClient('/sse/stream', { topics: 'orders/42' });

const parser = new SSEParser((e) => { const t: string = e.type + e.data + e.lastEventId; return t; }, (ms: number) => ms, resumeFrom);
parser.push('data: x\n\n');

// @ts-expect-error: no such transport
new SSEClient('/sse/stream', { transport: 'websocket' });
// @ts-expect-error: a token function returns a string (or a promise of one)
new SSEClient('/sse/stream', { token: () => 42 });
// @ts-expect-error: the state is the client's to change
client.state = 'connected';
// @ts-expect-error: options are named
new SSEClient('/sse/stream', { tokn: 'x' });

const r: ReactResult = useReactSSE('/sse/stream', {
  transport: 'eventsource',
  token: 'jwt',
  events: { notification: (m) => m.raw },
  listen: ['news'],
  enabled: true,
});
const reactState: SSEState = r.state;
const reactClient: string | null = r.clientId;
const reactTopics: string[] = r.topics;
r.reconnect();
r.close();
useReactSSE(null);
// @ts-expect-error: handlers take one message
useReactSSE('/sse/stream', { events: { n: (a: SSEMessage, b: number) => a.raw + b } });

const v = useVueSSE(ref('/sse/stream'), { token: ref('jwt'), enabled: () => true, transport: 'fetch' });
const vueState: SSEState = v.state.value;
const vueEvent: SSEMessage | null = v.lastEvent.value;
const vueError: Error | null = v.error.value;
const vueTopics: string[] = v.topics.value;
useVueSSE(() => '/sse/stream', { token: ({ expired }) => (expired ? 'a' : 'b') });
// @ts-expect-error: the composable returns refs
const notARef: SSEState = v.state;

export { reactState, reactClient, vueState, vueEvent, vueError, notARef, retry };
