// What the terminal client needs from a transport: a request in, the reply's events out as they
// arrive, cancelled by an AbortSignal; a failed call is thrown as a CallFailed.
// The browser build of the generated messages: the same types as grpc-js's, without loading grpc-js.
import type { ChatRequest, ChatResponse } from "../contract/web.js";

export type ChatEvent = NonNullable<ChatResponse["event"]>;

/** Opens one Chat call. Iterating yields its events; stopping early or aborting cancels it. */
export type OpenChat = (request: ChatRequest, signal: AbortSignal) => AsyncIterable<ChatEvent>;

/** A call that ended with a gRPC status other than OK, before or after its first event. */
export class CallFailed extends Error {
  constructor(
    /** The gRPC status code. */
    readonly code: number,
    message: string,
    /** Through Envoy: the HTTP status, when the call failed before its first event. */
    readonly httpStatus?: number,
    /** Seconds, from the `retry-after` the gateway sent with a 429. */
    readonly retryAfter?: string,
  ) {
    super(message);
    this.name = "CallFailed";
  }
}
