// The descriptor set built from proto/ (plus grpc.health.v1) by `npm run generate`: the same bytes
// Envoy's transcoder loads, reused here for server reflection so grpcurl needs no proto files.
import { readFileSync } from "node:fs";
import { loadFileDescriptorSetFromBuffer, type PackageDefinition } from "@grpc/proto-loader";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

// Resolved from this module's folder, which is src/contract/ under vitest and dist/contract/ when
// built: both two levels below the repository root, where src/gen/ is.
const DESCRIPTOR_URL = new URL("../../src/gen/chat.binpb", import.meta.url);

export function readDescriptorSet(): Buffer {
  return readFileSync(DESCRIPTOR_URL);
}

/**
 * The descriptor set as @grpc/reflection serves it. proto-loader's package definition re-encodes
 * each file through protobufjs, which drops the files' imports and writes type names unqualified:
 * grpcurl then cannot resolve chat.proto's google.protobuf.Struct fields. The reflection service
 * reads only each entry's `fileDescriptorProtos`, so it gets buf's own file descriptors, as built.
 */
export function reflectionDefinition(set: Buffer): PackageDefinition {
  const definition = loadFileDescriptorSetFromBuffer(set);
  const files = fileDescriptorProtos(set);
  for (const entry of Object.values(definition)) {
    if ("fileDescriptorProtos" in entry) entry.fileDescriptorProtos = files;
  }
  return definition;
}

/** The encoded FileDescriptorProtos of a FileDescriptorSet (`repeated FileDescriptorProto file = 1`). */
function fileDescriptorProtos(set: Uint8Array): Buffer[] {
  const reader = new BinaryReader(set);
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType);
  }
  return files;
}
