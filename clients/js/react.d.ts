// Types of ssehub-client/react (react.js). They need no React types: the
// hook returns plain values.
import type { SSEClientOptions, SSEMessage, SSEState } from './index.js';

export interface UseSSEOptions extends SSEClientOptions {
  /** Handlers by event name; may change on every render without
   * reconnecting (the latest one is called). */
  events?: Record<string, (message: SSEMessage) => void>;
  /** More event names that only update lastEvent. */
  listen?: string[];
  /** false closes the stream (default true). */
  enabled?: boolean;
}

export interface UseSSEResult {
  state: SSEState;
  /** Why the stream is not connected; null once it is. */
  error: Error | null;
  /** The last event of `events` / `listen` / unnamed messages. */
  lastEvent: SSEMessage | null;
  /** This stream's client_id (from ssehub's connected event). */
  clientId: string | null;
  /** The stream's topics as the hub last said (connected, subscribed,
   * unsubscribed). */
  topics: string[];
  close(): void;
  reconnect(): void;
}

/** url: null or '' opens nothing. */
export function useSSE(url: string | URL | null | undefined, options?: UseSSEOptions): UseSSEResult;
