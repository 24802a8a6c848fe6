// The descriptor set built from proto/ (plus grpc.health.v1) by `npm run generate`: the same bytes
// Envoy's transcoder loads, reused here for server reflection so grpcurl needs no proto files.
import { readFileSync } from "node:fs";

// Resolved from this module's folder, which is src/ under vitest and dist/ when built: both sit
// beside src/gen/ at the repository root.
const DESCRIPTOR_URL = new URL("../src/gen/chat.binpb", import.meta.url);

export function readDescriptorSet(): Buffer {
  return readFileSync(DESCRIPTOR_URL);
}
