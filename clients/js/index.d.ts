// Types of ssehub-client (index.js). Checked by tests/clients (tsc --noEmit
// with strict on a file that uses every declaration, and a test that the
// names here are the names index.js exports).

/** What the client passes to a token function. */
export interface SSETokenInfo {
  /** True after the hub ended the stream with `token_expired` or refused an
   * attempt with 401: return a new token, not a cached one. */
  expired: boolean;
}

/** A token, or a function that returns one (or a promise of one). */
export type SSETokenSource = string | ((info: SSETokenInfo) => string | Promise<string>);

export type SSETransport = 'eventsource' | 'fetch';

export type SSEState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface SSEClientOptions {
  /** Default: 'eventsource' where the platform has EventSource, else 'fetch'. */
  transport?: SSETransport;
  /** Default ''. Called before every attempt when a function. */
  token?: SSETokenSource;
  /** eventsource only: token in the query string (default) or in a cookie
   * the application set. */
  tokenIn?: 'query' | 'cookie';
  /** Query parameter of the token (default 'token'). */
  tokenParam?: string;
  /** Query parameter a new EventSource resumes with (default
   * 'last_event_id'); fetch sends the Last-Event-ID header instead. */
  lastEventIdParam?: string;
  /** Send cookies to another origin (default false). */
  withCredentials?: boolean;
  /** Resume from this id on the first connect (default ''). */
  lastEventId?: string;
  /** Topics to subscribe to at connect (default []): one `topic=` query
   * parameter each. The token's topics claim must allow every one (else 403
   * topic_forbidden, and the client closes). */
  topics?: string[];
  /** First reconnection delay after a failure, in ms (default 1000). */
  minDelayMs?: number;
  /** Cap of the exponential backoff, in ms (default 30000). */
  maxDelayMs?: number;
  /** Reconnect when nothing arrives for this long, in ms (default 75000);
   * 0 disables. */
  idleTimeoutMs?: number;
  /** Server events that close the client (default ['disconnect']). */
  stopOn?: string[];
  /** Server events after which a function token is asked for a new one and
   * the stream reconnects at once (default ['token_expired']). */
  refreshOn?: string[];
  /** The fetch function (default globalThis.fetch). */
  fetch?: typeof fetch | null;
}

/** One event as handlers get it. */
export interface SSEMessage<T = unknown> {
  /** The event name ('message' for unnamed events). */
  event: string;
  /** The data parsed as JSON, or the text when it is not JSON. */
  data: T;
  /** The data as it came. */
  raw: string;
  /** The last event id (ssehub: the message's id; connected and ping
   * repeat the previous one). */
  id: string;
}

/** What onState handlers get. */
export interface SSEStateInfo {
  state: SSEState;
  detail: string;
  /** 'reconnecting' comes once with waiting true (the next attempt is due
   * in delayMs), and once more when that attempt starts. */
  waiting: boolean;
  delayMs: number;
  /** Why: an SSEHttpError for an HTTP answer, another Error otherwise. */
  error: Error | null;
}

/** An HTTP answer that is not a stream. */
export class SSEHttpError extends Error {
  constructor(status: number, code?: string, message?: string);
  /** The HTTP status. */
  readonly status: number;
  /** ssehub's error code ('token_expired', 'too_many_clients'...), '' when
   * the body was not ssehub's JSON. */
  readonly code: string;
}

/** An incremental parser of text/event-stream (WHATWG HTML, "Server-sent
 * events"): feed it decoded text in chunks of any size. */
export class SSEParser {
  constructor(
    onEvent: (event: { type: string; data: string; lastEventId: string }) => void,
    onRetry?: (ms: number) => void,
    lastEventId?: string,
  );
  /** The last event ID string. */
  lastEventId: string;
  push(text: string): void;
}

export class SSEClient {
  /** url: the stream URL, relative to the page or absolute (Node: absolute). */
  constructor(url: string | URL, options?: SSEClientOptions);
  readonly url: string | URL;
  /** The options in force, defaults filled in. token, topics and the delays
   * may be changed; reconnect() applies a change at once. */
  readonly options: Required<SSEClientOptions>;
  /** The id the next attempt resumes from. */
  lastEventId: string;
  /** The stream's topics as the hub last said: from `connected`, then
   * `subscribed` / `unsubscribed` (server-side changes, gone after a
   * reconnect). */
  readonly topics: string[];
  /** The server's last `retry:` in ms (fetch transport), else null. */
  retryMs: number | null;
  readonly state: SSEState;
  /** Calls fn for each event named `name` ('message' = unnamed); returns a
   * function that removes it. */
  on<T = unknown>(name: string, fn: (message: SSEMessage<T>) => void): () => void;
  /** Calls fn on every change of state; returns a function that removes it. */
  onState(fn: (info: SSEStateInfo) => void): () => void;
  /** Opens the stream (nothing when it is not closed). */
  connect(): void;
  /** Opens a new stream at once, resuming from lastEventId. */
  reconnect(): void;
  /** Closes the stream and stops reconnecting. */
  close(detail?: string): void;
}
