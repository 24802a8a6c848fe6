// Several named upstreams behind one ChatUpstream: a request goes to the upstream that lists its
// model (exactly, or by a `prefix*` pattern), and every other model to the default upstream.
import type { ChatUpstream, UpstreamBatch, UpstreamCall, UpstreamRequest } from "./port.js";

export interface Route {
  name: string;
  upstream: ChatUpstream;
  /** Model names; one ending in `*` matches every model that starts with what comes before it. */
  models: readonly string[];
}

export class UpstreamRouter implements ChatUpstream {
  private readonly exact = new Map<string, Route>();
  private readonly prefixes: { prefix: string; route: Route }[] = [];

  constructor(
    private readonly fallthrough: Route,
    routes: readonly Route[],
  ) {
    for (const route of routes) {
      for (const model of route.models) {
        if (model.endsWith("*")) this.prefixes.push({ prefix: model.slice(0, -1), route });
        else this.exact.set(model, route);
      }
    }
    // The longest prefix wins, so `gpt-4o*` can go elsewhere than `gpt-*`.
    this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** The route a model goes to. */
  route(model: string): Route {
    return this.exact.get(model) ?? this.prefixes.find((p) => model.startsWith(p.prefix))?.route ?? this.fallthrough;
  }

  stream(request: UpstreamRequest, call: UpstreamCall): AsyncIterable<UpstreamBatch> {
    const route = this.route(request.model);
    call.observer.routed(route.name);
    return route.upstream.stream(request, call);
  }
}
