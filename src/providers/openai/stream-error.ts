// The HTTP status an error reported inside an SSE stream stands for. Servers that have already sent
// `200 OK` and `text/event-stream` report a failure as a `data: {"error": {...}}` event (or an
// `event: error`), and say what it was in one of several dialects:
//   - a number, the HTTP status: vLLM `{"code": 400}`, OpenRouter `{"code": 429}`, LiteLLM `{"code": "429"}`
//   - OpenAI's `code` and `type`: `{"type": "invalid_request_error", "code": "invalid_api_key"}` (its
//     real 401 body, which @dwmkerr/mock-llm streams as a 200), `rate_limit_exceeded`, `server_error`
//   - Google's `status`: `{"code": 429, "status": "RESOURCE_EXHAUSTED"}`
//   - Anthropic's `type`: `overloaded_error`, `rate_limit_error`, `authentication_error`, ...
// The most specific wins: a number, then a known `code`, then `status`, then `type`.

/** OpenAI's error codes that name an HTTP status. */
const CODES: Record<string, number> = {
  invalid_api_key: 401,
  unsupported_country_region_territory: 403,
  model_not_found: 404,
  context_length_exceeded: 400,
  rate_limit_exceeded: 429,
  insufficient_quota: 429,
  server_error: 500,
};

/** Google's (and gRPC's) status names. */
const STATUSES: Record<string, number> = {
  INVALID_ARGUMENT: 400,
  FAILED_PRECONDITION: 400,
  OUT_OF_RANGE: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  ABORTED: 409,
  RESOURCE_EXHAUSTED: 429,
  INTERNAL: 500,
  UNKNOWN: 500,
  UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
};

/** Error types of OpenAI, Anthropic and vLLM (which names them after the exception). */
const TYPES: Record<string, number> = {
  invalid_request_error: 400,
  badrequesterror: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  notfounderror: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  insufficient_quota: 429,
  tokens: 429,
  requests: 429,
  api_error: 500,
  server_error: 500,
  internalservererror: 500,
  overloaded_error: 503,
  service_unavailable_error: 503,
};

/** The status an in-stream error body stands for; undefined when it names none we know. */
export function statusOfStreamError(body: unknown): number | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const { code, status, type } = body as { code?: unknown; status?: unknown; type?: unknown };
  return (
    httpStatus(code) ?? httpStatus(status) ?? known(CODES, code) ?? known(STATUSES, status) ?? known(TYPES, type, true)
  );
}

function httpStatus(value: unknown): number | undefined {
  const n =
    typeof value === "number" ? value : typeof value === "string" && /^\d{3}$/.test(value) ? Number(value) : NaN;
  return n >= 400 && n <= 599 ? n : undefined;
}

function known(table: Record<string, number>, value: unknown, anyCase = false): number | undefined {
  if (typeof value !== "string") return undefined;
  const key = anyCase ? value.toLowerCase() : value;
  return Object.hasOwn(table, key) ? table[key] : undefined;
}
