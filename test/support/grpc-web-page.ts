// Bundled by esbuild into the page the gRPC-Web test opens in Chromium: connect-web's gRPC-Web
// transport (fetch) with the protobuf-es code generated from proto/, as a browser team writes it.
import { createClient, ConnectError } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ChatService } from "../../src/gen/chat/v1/chat_pb.js";

/** What the page offers the test (`page.evaluate`), on its global object. */
export interface GrpcWebPage {
  /** Streams one reply; calls `onFirst` (exposed by the test) at the first delta, then aborts if asked. */
  chat(
    baseUrl: string,
    text: string,
    abortAfterFirst: boolean,
  ): Promise<{ texts: string[]; last: string; error?: string }>;
  onFirst(): Promise<void>;
}

const page = globalThis as unknown as GrpcWebPage;

page.chat = async (baseUrl, text, abortAfterFirst) => {
  const client = createClient(ChatService, createGrpcWebTransport({ baseUrl }));
  const controller = new AbortController();
  const texts: string[] = [];
  let last = "";
  try {
    for await (const { event } of client.chat({ text }, { signal: controller.signal })) {
      last = event.case ?? "";
      if (event.case === "delta") {
        texts.push(event.value.text);
        if (texts.length === 1) {
          await page.onFirst();
          if (abortAfterFirst) controller.abort();
        }
      }
    }
    return { texts, last };
  } catch (error) {
    return { texts, last, error: `${ConnectError.from(error).code}` };
  }
};
