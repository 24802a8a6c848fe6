// --http URL: POST /chat through Envoy, with the package's browser client (chat-gateway/web), which
// yields the same events as the gRPC call and fails with the same gRPC codes, and resumes a dropped
// stream the same way (GET /chat/streams/{id} with Last-Event-ID; DELETE when leaving early).
import { ChatError, streamChat, type ReconnectOptions } from "../web/client.js";
import { CallFailed, type OpenChat } from "./call.js";

export function httpChat(baseUrl: string, key: string | undefined, resume?: ReconnectOptions): OpenChat {
  return async function* chat(request, signal) {
    try {
      for await (const response of streamChat(request, { baseUrl, apiKey: key, signal, resume: resume ?? false })) {
        if (response.event) yield response.event;
      }
    } catch (error) {
      if (!(error instanceof ChatError)) throw error;
      // The HTTP status says something only for a refusal; an in-band error came with the 200.
      const retryAfter = error.retryAfterSeconds === undefined ? undefined : String(error.retryAfterSeconds);
      throw new CallFailed(error.code, error.message, error.inBand ? undefined : error.httpStatus, retryAfter);
    }
  };
}
