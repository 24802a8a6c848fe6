// --http: POST /chat through Envoy with the package's browser client (chat-gateway/web).
import type { OpenChat } from "./call.js";

export function httpChat(_url: string, _key: string | undefined): OpenChat {
  throw new Error("--http is not available yet");
}
