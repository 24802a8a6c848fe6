// The terminal client's default transport: a grpc-js call to the service's gRPC port. With resume
// (the default), the request is `resumable` and a call that breaks mid-stream (UNAVAILABLE: the
// connection dropped) re-attaches with ResumeChat from the last event printed, so the answer goes
// on with no gap and no repeat; leaving early (Ctrl-C, stdout closed) cancels it with CancelChat.
import { credentials, Metadata, status, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import { ChatRequest, ChatServiceClient, ErrorInfo, Status, type ChatResponse } from "../contract/chat.js";
import { Outage, type ReconnectOptions } from "../web/reconnect.js";
import { CallFailed, type OpenChat } from "./call.js";

/** How long leaving may wait for CancelChat: best effort, the gateway stops it after RESUME_GRACE_MS anyway. */
const CANCEL_DEADLINE_MS = 2_000;
/**
 * Ctrl-C before the first event: how long the call is kept for that event to name the stream, so
 * it can be cancelled (a second Ctrl-C does not wait).
 */
const NAMING_WAIT_MS = 5_000;

export function grpcChat(target: string, key: string | undefined, resume?: ReconnectOptions): OpenChat {
  return async function* chat(request, signal) {
    const client = new ChatServiceClient(target, credentials.createInsecure());
    const metadata = new Metadata();
    if (key) metadata.set("authorization", `Bearer ${key}`);
    const position = { streamId: undefined as string | undefined, sequence: 0 };
    let ended = false;
    let outage: Outage | undefined;
    let call: ClientReadableStream<ChatResponse> = client.chat(
      ChatRequest.fromPartial({ ...request, resumable: resume !== undefined || request.resumable }),
      metadata,
    );
    try {
      for (;;) {
        // Cancelling sends RST_STREAM: the service stops writing to this call. A resumable stream
        // not yet named by its first event could not be cancelled after that (its generation would
        // run on for RESUME_GRACE_MS): the call is kept until that event comes, then CancelChat.
        let naming: NodeJS.Timeout | undefined;
        const cancel = () => {
          if (resume && position.streamId === undefined) naming = setTimeout(() => call.cancel(), NAMING_WAIT_MS);
          else call.cancel();
        };
        signal.addEventListener("abort", cancel, { once: true });
        let lost: CallFailed;
        try {
          for await (const response of call as AsyncIterable<ChatResponse>) {
            if (response.sequence !== undefined) {
              // ResumeChat sends nothing at or before `after`; this keeps "each event once" if it did.
              if (response.sequence <= position.sequence) continue;
              position.sequence = response.sequence;
            }
            position.streamId ??= response.streamId;
            // Left while the stream was unnamed: now it can be cancelled (below).
            if (signal.aborted) return;
            outage = undefined;
            const kind = response.event?.$case;
            ended = kind === "finish" || kind === "error";
            if (response.event) yield response.event;
          }
          if (ended) return;
          lost = new CallFailed(status.UNAVAILABLE, "the stream ended without a finish event");
        } catch (error) {
          const e = error as Partial<ServiceError>;
          if (typeof e.code !== "number") throw error;
          const failed = callFailed(e);
          if (ended || signal.aborted || !resumable(e)) throw failed;
          lost = failed;
        } finally {
          clearTimeout(naming);
          signal.removeEventListener("abort", cancel);
          // A consumer that stops reading early (its stdout closed) cancels the call too; after the
          // end of the stream this does nothing.
          call.cancel();
        }
        const { streamId, sequence } = position;
        if (!resume || streamId === undefined) throw lost;
        outage ??= new Outage(resume);
        const spent = outage.spent();
        if (spent) throw new CallFailed(lost.code, `${lost.message}; ${spent}`);
        await outage.wait(lost, signal);
        call = client.resumeChat({ streamId, after: sequence }, metadata);
      }
    } finally {
      // Left early (Ctrl-C, stdout closed, a failure to resume): the generation would go on for nobody.
      if (!ended && resume && position.streamId !== undefined) await cancelQuietly(client, position.streamId, metadata);
      client.close();
    }
  };
}

function callFailed(e: Partial<ServiceError>): CallFailed {
  const code = e.code ?? status.UNKNOWN;
  const retryAfter = e.metadata?.get("retry-after")[0];
  return new CallFailed(
    code,
    e.details ?? status[code] ?? "",
    undefined,
    retryAfter === undefined ? undefined : String(retryAfter),
  );
}

/**
 * A break worth re-attaching after: UNAVAILABLE (the connection dropped, a replica restarting, the
 * store down), but not "the generation was lost" (its replica died: the stream will never finish).
 */
function resumable(e: Partial<ServiceError>): boolean {
  if (e.code !== status.UNAVAILABLE) return false;
  const details = e.metadata?.get("grpc-status-details-bin")[0];
  if (!(details instanceof Buffer)) return true;
  try {
    return !Status.decode(details).details.some(
      (any) => any.typeUrl.endsWith("google.rpc.ErrorInfo") && ErrorInfo.decode(any.value).reason === "GENERATION_LOST",
    );
  } catch {
    return true;
  }
}

function cancelQuietly(client: ChatServiceClient, streamId: string, metadata: Metadata): Promise<void> {
  return new Promise((resolve) =>
    client.cancelChat({ streamId }, metadata, { deadline: Date.now() + CANCEL_DEADLINE_MS }, () => resolve()),
  );
}
