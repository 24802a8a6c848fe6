// An error in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, from a gRPC status:
// what the SDKs raise as their own classes. Before the first byte the HTTP status says which class
// (Envoy maps the gRPC status, and its Lua filter on the /v1/ routes reshapes the body the same way
// this does: envoy.yaml); inside a stream this is the `error` event's payload.
import { status } from "@grpc/grpc-js";

/** OpenAI's error `type` for each gRPC status the gateway answers with. */
const TYPES: Partial<Record<status, string>> = {
  [status.INVALID_ARGUMENT]: "invalid_request_error",
  [status.FAILED_PRECONDITION]: "invalid_request_error",
  [status.OUT_OF_RANGE]: "invalid_request_error",
  [status.UNAUTHENTICATED]: "authentication_error",
  [status.PERMISSION_DENIED]: "permission_error",
  [status.NOT_FOUND]: "not_found_error",
  [status.RESOURCE_EXHAUSTED]: "rate_limit_error",
  [status.DEADLINE_EXCEEDED]: "timeout_error",
  [status.CANCELLED]: "cancelled",
};

export function openAIError(code: status, message: string) {
  return {
    error: {
      message,
      type: TYPES[code] ?? "server_error",
      // The gateway's messages start with the field they are about: `messages[0].role: ...`.
      param: /^([A-Za-z_][\w.[\]]*): /.exec(message)?.[1] ?? null,
      code: (status[code] ?? "unknown").toLowerCase(),
    },
  };
}
