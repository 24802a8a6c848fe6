// ChatRequest from the wire, with invalid UTF-8 noticed instead of silently replaced. proto3 strings
// must be valid UTF-8, but the ts-proto code decodes them leniently (U+FFFD for bad bytes), so a gRPC
// caller's garbage would reach the upstream as replacement characters, where the HTTP path through
// Envoy refuses it. The request is decoded with a strict UTF-8 decoder (the reader's own hook, no
// cost per valid request); only when that fails is it walked once more, field by field from the
// descriptor set, to name the first bad field for the caller. The handler refuses such a request with
// INVALID_ARGUMENT (a deserializer that threw would give the caller INTERNAL).
import { isUtf8 } from "node:buffer";
import { createFileRegistry, fromBinary, ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { ChatRequest } from "../contract/chat.js";
import { readDescriptorSet } from "../contract/descriptor.js";

/** On a decoded request whose strings were not all valid UTF-8: the path of the first bad one. */
export const INVALID_UTF8 = Symbol("invalid UTF-8 field");

export type DecodedChatRequest = ChatRequest & { [INVALID_UTF8]?: string };

export function chatRequestDecoder(): (bytes: Buffer) => DecodedChatRequest {
  const schema = createFileRegistry(fromBinary(FileDescriptorSetSchema, readDescriptorSet())).getMessage(
    "chat.v1.ChatRequest",
  );
  if (!schema) throw new Error("chat.v1.ChatRequest is missing from the descriptor set");
  const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const decodeStrictly = (bytes: Uint8Array) => strict.decode(bytes);
  return (bytes) => {
    try {
      return ChatRequest.decode(new BinaryReader(bytes, decodeStrictly));
    } catch (error: unknown) {
      if ((error as { code?: unknown }).code !== "ERR_ENCODING_INVALID_ENCODED_DATA") throw error;
      const request: DecodedChatRequest = ChatRequest.decode(bytes);
      request[INVALID_UTF8] = firstInvalidUtf8(schema, bytes) ?? "request";
      return request;
    }
  };
}

/** The path of the first string field (at any depth) whose bytes are not UTF-8, e.g. `messages[1].content`. */
function firstInvalidUtf8(message: DescMessage, bytes: Uint8Array, prefix = ""): string | undefined {
  const reader = new BinaryReader(bytes);
  const occurrences = new Map<number, number>();
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    const field = message.fields.find((f) => f.number === number);
    if (field === undefined || wireType !== WireType.LengthDelimited) {
      reader.skip(wireType, number);
      continue;
    }
    const value = reader.bytes();
    const index = occurrences.get(number) ?? 0;
    occurrences.set(number, index + 1);
    const path = `${prefix}${field.name}${field.fieldKind === "list" ? `[${index}]` : ""}`;
    if (isString(field) && !isUtf8(value)) return path;
    const nested = messageOf(field);
    const found = nested && firstInvalidUtf8(nested, value, `${path}.`);
    if (found) return found;
  }
  return undefined;
}

function isString(field: DescField): boolean {
  return (
    (field.fieldKind === "scalar" || (field.fieldKind === "list" && field.listKind === "scalar")) &&
    field.scalar === ScalarType.STRING
  );
}

function messageOf(field: DescField): DescMessage | undefined {
  if (field.fieldKind === "message") return field.message;
  if (field.fieldKind === "list" && field.listKind === "message") return field.message;
  return undefined;
}
