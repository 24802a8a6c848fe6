// chat.v1's messages for browsers (the `chat-gateway/web` client, the page and the CLI's HTTP
// transport): generated without the grpc-js service stubs, so nothing here needs Node.
export * from "../gen/web/chat/v1/chat.js";
