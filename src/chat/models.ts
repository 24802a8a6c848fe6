// ListModels: every model the gateway can route to. Each configured upstream is asked for its own
// `GET /models`; the model names the configuration routes by are added; each model is named with
// the upstream a Chat request for it would go to (the router decides, as for Chat). An upstream
// that cannot list is reported in `unavailable` and the call still succeeds.
import { status, type handleUnaryCall } from "@grpc/grpc-js";
import type { ListModelsRequest, ListModelsResponse, Model, UnavailableUpstream } from "../contract/chat.js";
import { toGatewayStatus } from "./errors.js";
import type { Logger } from "pino";
import type { ListedModel } from "../upstream/port.js";

export interface ModelSource {
  /** The upstream's name, as in logs and metrics ("default" for OPENAI_BASE_URL). */
  name: string;
  list(timeoutMs: number): Promise<ListedModel[]>;
}

export interface ModelCatalogOptions {
  /** Every upstream a Chat request can be routed to, in the order to list them. */
  sources: readonly ModelSource[];
  /** Model names the configuration routes by (exact names only, no `prefix*`). */
  configured: readonly string[];
  /** The upstream a Chat request for this model goes to. */
  route: (model: string) => string;
  /** How long a listing is reused (0: never). */
  cacheMs: number;
  /** How long one upstream may take to list. */
  timeoutMs: number;
  /** Strings never to pass on (API keys), scrubbed from upstream messages. */
  secrets: readonly string[];
  now?: () => number;
}

/**
 * A failed listing is reused for at most this long, so a caller polling ListModels does not wait
 * out the timeout on every call while an upstream is down, and sees it back within seconds.
 */
export const FAILED_LISTING_CACHE_MS = 5_000;

type Listing = { ok: true; models: ListedModel[] } | { ok: false; message: string };

export interface ModelCatalog {
  list(): Promise<ListModelsResponse>;
}

export function createModelCatalog(options: ModelCatalogOptions): ModelCatalog {
  const now = options.now ?? Date.now;
  // One entry per upstream; concurrent calls share the listing in flight.
  const cache = new Map<string, { listing: Promise<Listing>; expires: number }>();

  function listingOf(source: ModelSource): Promise<Listing> {
    const cached = cache.get(source.name);
    if (cached && now() < cached.expires) return cached.listing;
    const entry = { expires: Number.POSITIVE_INFINITY, listing: Promise.resolve<Listing>({ ok: true, models: [] }) };
    entry.listing = source.list(options.timeoutMs).then(
      (models): Listing => {
        entry.expires = now() + options.cacheMs;
        return { ok: true, models };
      },
      (error: unknown): Listing => {
        entry.expires = now() + Math.min(options.cacheMs, FAILED_LISTING_CACHE_MS);
        return { ok: false, message: toGatewayStatus(error, options.secrets).details };
      },
    );
    cache.set(source.name, entry);
    return entry.listing;
  }

  return {
    async list() {
      const listings = await Promise.all(options.sources.map(listingOf));
      const configured = new Set(options.configured);
      const found = new Map<string, Model>();
      const unavailable: UnavailableUpstream[] = [];
      for (const [i, source] of options.sources.entries()) {
        const listing = listings[i];
        if (!listing) continue;
        if (!listing.ok) {
          unavailable.push({ upstream: source.name, message: listing.message });
          continue;
        }
        for (const model of listing.models) {
          // A model this upstream lists but the routing sends elsewhere cannot be reached here.
          if (options.route(model.id) !== source.name || found.has(model.id)) continue;
          found.set(model.id, {
            id: model.id,
            upstream: source.name,
            ownedBy: model.ownedBy,
            configured: configured.has(model.id),
          });
        }
      }
      for (const id of configured) {
        if (!found.has(id)) found.set(id, { id, upstream: options.route(id), ownedBy: "", configured: true });
      }
      const order = new Map(options.sources.map((s, i) => [s.name, i]));
      const models = [...found.values()].sort(
        (a, b) =>
          (order.get(a.upstream) ?? 0) - (order.get(b.upstream) ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
      );
      return { models, unavailable };
    },
  };
}

export function listModelsHandler(
  catalog: ModelCatalog,
  logger: Logger,
): handleUnaryCall<ListModelsRequest, ListModelsResponse> {
  return (_call, callback) => {
    catalog.list().then(
      (response) => callback(null, response),
      (error: unknown) => {
        logger.error({ err: error }, "ListModels failed");
        callback({ code: status.INTERNAL, details: "internal error" });
      },
    );
  };
}
