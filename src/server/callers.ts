// Which caller key each call presented, as the auth interceptor found it, for the interceptors
// after it (budgets, metrics) and the handlers. Keyed by the call's Metadata object, which grpc-js
// hands unchanged from the interceptors to the handler: nothing travels in a header a client could
// also send, and an entry goes with its call.
import type { Metadata } from "@grpc/grpc-js";

export class Callers {
  private readonly names = new WeakMap<Metadata, string>();

  set(metadata: Metadata, name: string): void {
    this.names.set(metadata, name);
  }

  /** The caller key's name, or undefined when no key was checked for this call (caller keys off). */
  of(metadata: Metadata): string | undefined {
    return this.names.get(metadata);
  }
}
