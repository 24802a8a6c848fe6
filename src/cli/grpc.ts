// The terminal client's default transport: a grpc-js call to the service's gRPC port.
import { credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { ChatRequest, ChatServiceClient, type ChatResponse } from "../contract/chat.js";
import { CallFailed, type OpenChat } from "./call.js";

export function grpcChat(target: string, key: string | undefined): OpenChat {
  return async function* chat(request, signal) {
    const client = new ChatServiceClient(target, credentials.createInsecure());
    const metadata = new Metadata();
    if (key) metadata.set("authorization", `Bearer ${key}`);
    const call = client.chat(ChatRequest.fromPartial(request), metadata);
    // Cancelling sends RST_STREAM: the service aborts its upstream request at once.
    const cancel = () => call.cancel();
    signal.addEventListener("abort", cancel, { once: true });
    try {
      for await (const response of call as AsyncIterable<ChatResponse>) {
        if (response.event) yield response.event;
      }
    } catch (error) {
      const e = error as Partial<ServiceError>;
      if (typeof e.code !== "number") throw error;
      const retryAfter = e.metadata?.get("retry-after")[0];
      throw new CallFailed(
        e.code,
        e.details ?? status[e.code] ?? "",
        undefined,
        retryAfter === undefined ? undefined : String(retryAfter),
      );
    } finally {
      signal.removeEventListener("abort", cancel);
      // A consumer that stops reading early (its stdout closed) cancels the call too; after the
      // end of the stream this does nothing.
      call.cancel();
      client.close();
    }
  };
}
