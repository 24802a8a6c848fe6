// The typed grpc-js client for other services: `import { ChatServiceClient } from "chat-gateway/client"`.
export {
  ChatServiceClient,
  ChatRequest,
  ChatResponse,
  ChatMessage,
  Delta,
  Finish,
  Usage,
  StreamError,
} from "./gen/chat/v1/chat.js";
