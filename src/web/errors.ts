// The one error the browser client throws: a failure before the first event (an HTTP status with the
// gateway's `{"code", "message"}` body), an in-band `error` event, a stream that ended without its
// final event, or a gateway that could not be reached. Runs in browsers and in Node: no Node imports.

/** gRPC status codes (google.rpc.Code), by name; `code` on a ChatError is one of these. */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcCodeName = keyof typeof GrpcCode;

const NAMES = Object.keys(GrpcCode) as GrpcCodeName[];

/** `8` → `"RESOURCE_EXHAUSTED"`; `"UNKNOWN"` for a number that is no gRPC code. */
export function grpcCodeName(code: number): GrpcCodeName {
  return NAMES[code] ?? "UNKNOWN";
}

export interface ChatErrorInit {
  code: number;
  message: string;
  /** The HTTP status of the response: the error's own (400, 429, 503, ...), 200 for an in-band error, undefined when no response came. */
  httpStatus?: number | undefined;
  retryAfterSeconds?: number | undefined;
  requestId?: string | undefined;
  inBand?: boolean;
  details?: unknown[] | undefined;
  cause?: unknown;
}

export class ChatError extends Error {
  /** The gRPC status code, as the gRPC client would see it (`GrpcCode`). */
  readonly code: number;
  /** The code's name, e.g. `"RESOURCE_EXHAUSTED"`. */
  readonly codeName: GrpcCodeName;
  /** The HTTP status: the error's own before the first event, 200 for an in-band error, undefined when the gateway was not reached. */
  readonly httpStatus: number | undefined;
  /** Seconds to wait before retrying, when the gateway said (`retry-after`, as on a 429). */
  readonly retryAfterSeconds: number | undefined;
  /** Envoy's `x-request-id` for the request, to quote when asking what happened. */
  readonly requestId: string | undefined;
  /** True when the stream had started: the error came as its last event, after some of the reply. */
  readonly inBand: boolean;
  /** The `details` of the error body, as the gateway sent them (google.rpc.Status details), when it sent any. */
  readonly details: unknown[] | undefined;

  constructor(init: ChatErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "ChatError";
    this.code = init.code;
    this.codeName = grpcCodeName(init.code);
    this.httpStatus = init.httpStatus;
    this.retryAfterSeconds = init.retryAfterSeconds;
    this.requestId = init.requestId;
    this.inBand = init.inBand ?? false;
    this.details = init.details;
  }
}

/**
 * The gRPC code an HTTP status stands for when the body does not say (a proxy's own page): the
 * gateway's own mapping for the statuses it uses (docs/errors.md, "When things go wrong").
 */
function codeForHttpStatus(status: number): number {
  switch (status) {
    case 400:
    case 413:
    case 431:
      return GrpcCode.INVALID_ARGUMENT;
    case 401:
      return GrpcCode.UNAUTHENTICATED;
    case 403:
      return GrpcCode.PERMISSION_DENIED;
    case 404:
      return GrpcCode.NOT_FOUND;
    case 405:
    case 501:
      return GrpcCode.UNIMPLEMENTED;
    case 408:
    case 504:
      return GrpcCode.DEADLINE_EXCEEDED;
    case 429:
      return GrpcCode.RESOURCE_EXHAUSTED;
    case 502:
    case 503:
      return GrpcCode.UNAVAILABLE;
    default:
      return status >= 500 ? GrpcCode.INTERNAL : GrpcCode.UNKNOWN;
  }
}

/** `retry-after` as seconds: a number of seconds or an HTTP date. */
export function retryAfterSeconds(value: string | null): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/** The ChatError a non-2xx response stands for, from its `{"code", "message"}` body and headers. */
export async function errorFromResponse(response: Response): Promise<ChatError> {
  const text = await response.text().catch(() => "");
  let body: { code?: unknown; message?: unknown; details?: unknown } | undefined;
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    body = undefined;
  }
  const code = typeof body?.code === "number" ? body.code : codeForHttpStatus(response.status);
  const message =
    typeof body?.message === "string" && body.message
      ? body.message
      : `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
  return new ChatError({
    code,
    message,
    httpStatus: response.status,
    retryAfterSeconds: retryAfterSeconds(response.headers.get("retry-after")),
    requestId: response.headers.get("x-request-id") ?? undefined,
    details: Array.isArray(body?.details) ? body.details : undefined,
  });
}
