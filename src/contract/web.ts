// chat.v1's messages for browsers (the `chat-gateway/web` client, the page and the CLI's HTTP
// transport): generated without the grpc-js service stubs, so nothing here needs Node.
export * from "../gen/web/chat/v1/chat.js";
// google.rpc.Code, the gRPC status codes: the web client's GrpcCode (src/web/errors.ts).
export { Code } from "../gen/web/google/rpc/code.js";
