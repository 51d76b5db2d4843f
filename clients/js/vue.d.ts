// Types of ssehub-client/vue (vue.js).
import type { MaybeRefOrGetter, Ref, ShallowRef } from 'vue';
import type { SSEClientOptions, SSEMessage, SSEState, SSETokenInfo } from './index.js';

export interface UseSSEOptions extends Omit<SSEClientOptions, 'token'> {
  /** A string, a ref of one (a change reconnects), or a function called
   * before every attempt. */
  token?: string | Ref<string> | ((info: SSETokenInfo) => string | Promise<string>);
  /** Handlers by event name. */
  events?: Record<string, (message: SSEMessage) => void>;
  /** More event names that only update lastEvent. */
  listen?: string[];
  /** false closes the stream (default true). */
  enabled?: MaybeRefOrGetter<boolean>;
}

export interface UseSSEResult {
  state: Ref<SSEState>;
  /** Why the stream is not connected; null once it is. */
  error: ShallowRef<Error | null>;
  /** The last event of `events` / `listen` / unnamed messages. */
  lastEvent: ShallowRef<SSEMessage | null>;
  /** This stream's client_id (from ssehub's connected event). */
  clientId: Ref<string | null>;
  /** The stream's topics as the hub last said (connected, subscribed,
   * unsubscribed). */
  topics: ShallowRef<string[]>;
  close(): void;
  reconnect(): void;
}

/** url: a string, a ref or a getter; null or '' opens nothing. */
export function useSSE(url: MaybeRefOrGetter<string | null | undefined>, options?: UseSSEOptions): UseSSEResult;
