// chat.v1 as the service and its Node clients use it: the messages, the grpc-js service definition
// and client (ts-proto, generated into src/gen/ from proto/), and the google.rpc error details.
// The one door to the generated code for Node: nothing else in src/ imports src/gen/ (web.ts is
// the browsers' door), so a change of generator touches this folder only.
export * from "../gen/chat/v1/chat.js";
export { Any } from "../gen/google/protobuf/any.js";
export { Status } from "../gen/google/rpc/status.js";
export { ErrorInfo, RetryInfo } from "../gen/google/rpc/error_details.js";
export { HttpBody } from "../gen/google/api/httpbody.js";
