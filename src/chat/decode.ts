// ChatRequest from the wire. The deserializer never throws: grpc-js would answer a throw with
// INTERNAL "Error deserializing request", with no error details and no log line. A request it cannot
// decode comes back empty, marked with the problem (DECODE_PROBLEM), and the handler refuses it as
// it refuses any invalid request: INVALID_ARGUMENT, its details, the refusal's log line and metric.
//
// - Strings must be valid UTF-8 (proto3), but the ts-proto code decodes them leniently (U+FFFD for
//   bad bytes), so a gRPC caller's garbage would reach the upstream as replacement characters, where
//   the HTTP path through Envoy refuses it. The request is decoded with a strict UTF-8 decoder (the
//   reader's own hook, no cost per valid request); only when that fails is it walked once more,
//   field by field from the descriptor set, to name the first bad field.
// - JSON in google.protobuf.Struct fields costs three nested messages per level (Struct, its map
//   entry, Value), and ts-proto stops at 100 nested messages: 33 levels. The reader is given room for
//   MAX_JSON_DEPTH levels; a request nested deeper is walked to name the field.
// - Bytes that are not protobuf (truncated, a bad wire type) are refused with the reader's reason.
import { isUtf8 } from "node:buffer";
import { createFileRegistry, fromBinary, ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { ChatRequest } from "../contract/chat.js";
import { readDescriptorSet } from "../contract/descriptor.js";
import { MAX_JSON_DEPTH, NESTED_TOO_DEEP } from "./request-checks.js";

/** On a request that could not be decoded as it was sent: why, naming the field, e.g. `messages[1].content: not valid UTF-8`. */
export const DECODE_PROBLEM = Symbol("decode problem");

export type DecodedChatRequest = ChatRequest & { [DECODE_PROBLEM]?: string };

/**
 * The nested messages a request may need: the deepest Struct field sits under three messages
 * (ChatRequest, Tool, FunctionDefinition), and each JSON level is three more.
 */
const MAX_MESSAGE_DEPTH = 3 + 3 * MAX_JSON_DEPTH;
/** ts-proto's generated decoders count nesting on the reader and refuse at this many. */
const TS_PROTO_DEPTH_LIMIT = 100;

export function chatRequestDecoder(): (bytes: Buffer) => DecodedChatRequest {
  const schema = createFileRegistry(fromBinary(FileDescriptorSetSchema, readDescriptorSet())).getMessage(
    "chat.v1.ChatRequest",
  );
  if (!schema) throw new Error("chat.v1.ChatRequest is missing from the descriptor set");
  const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const decodeStrictly = (bytes: Uint8Array) => strict.decode(bytes);
  return (bytes) => {
    try {
      return ChatRequest.decode(readerFor(bytes, decodeStrictly));
    } catch (error: unknown) {
      return undecodable(schema, bytes, error);
    }
  };
}

/**
 * A reader whose nesting count starts below zero, so ts-proto's fixed limit of 100 admits
 * MAX_MESSAGE_DEPTH messages (the counter is the generated code's own, `__tsProtoDecodeDepth`;
 * test/e2e/robustness-grpc.test.ts fails should a new ts-proto count differently).
 */
function readerFor(bytes: Uint8Array, decodeUtf8?: (bytes: Uint8Array) => string): BinaryReader {
  const reader = new BinaryReader(bytes, decodeUtf8);
  (reader as unknown as { __tsProtoDecodeDepth: number }).__tsProtoDecodeDepth =
    TS_PROTO_DEPTH_LIMIT - MAX_MESSAGE_DEPTH;
  return reader;
}

function undecodable(schema: DescMessage, bytes: Uint8Array, error: unknown): DecodedChatRequest {
  const marked = (request: ChatRequest, problem: string): DecodedChatRequest =>
    Object.assign(request, { [DECODE_PROBLEM]: problem });
  const reason = error instanceof Error ? error.message : String(error);
  try {
    if ((error as { code?: unknown }).code === "ERR_ENCODING_INVALID_ENCODED_DATA") {
      let request: ChatRequest;
      try {
        // Decoded again leniently, so the refusal's log line still has the model it named.
        request = ChatRequest.decode(readerFor(bytes));
      } catch (lenient: unknown) {
        return undecodable(schema, bytes, lenient);
      }
      return marked(request, `${firstInvalidUtf8(schema, bytes) ?? "request"}: not valid UTF-8`);
    }
    if (reason === "protobuf decode recursion limit exceeded") {
      return marked(ChatRequest.create(), `${tooDeep(schema, bytes) ?? "request"}: ${NESTED_TOO_DEEP}`);
    }
  } catch {
    // The walk that would name the field met bytes that are not protobuf: said below.
  }
  // The reader's own words ("premature EOF", "invalid wire type 7", "illegal tag: ..."): they
  // quote nothing of the input.
  return marked(ChatRequest.create(), `request: not a valid protobuf chat.v1.ChatRequest (${reason})`);
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
    const path = `${prefix}${field.name}${indexOf(field, occurrences)}`;
    if (isString(field) && !isUtf8(value)) return path;
    const nested = messageOf(field);
    const found = nested && firstInvalidUtf8(nested, value, `${path}.`);
    if (found) return found;
  }
  return undefined;
}

/**
 * The path of the first Struct field (`extra_body`, `tools[2].function.parameters`, ...) whose JSON
 * nests deeper than MAX_JSON_DEPTH: a Struct or a ListValue is one level. It descends no further
 * than that, so its own recursion stays short however deep the bytes go.
 */
function tooDeep(message: DescMessage, bytes: Uint8Array, prefix = "", owner?: string, levels = 0): string | undefined {
  const reader = new BinaryReader(bytes);
  const occurrences = new Map<number, number>();
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    const field = message.fields.find((f) => f.number === number);
    const nested = field && (field.fieldKind === "map" ? field.message : messageOf(field));
    if (field === undefined || nested === undefined || wireType !== WireType.LengthDelimited) {
      reader.skip(wireType, number);
      continue;
    }
    // A map's entry is a message of its own: key 1, value 2 (Struct's fields are such a map).
    const value = field.fieldKind === "map" ? mapValue(reader.bytes()) : reader.bytes();
    const path = owner ?? `${prefix}${field.name}${indexOf(field, occurrences)}`;
    const json = nested.typeName === "google.protobuf.Struct" || nested.typeName === "google.protobuf.ListValue";
    const depth = levels + (json ? 1 : 0);
    if (depth > MAX_JSON_DEPTH) return path;
    const found = tooDeep(nested, value, `${path}.`, json ? path : owner, depth);
    if (found) return found;
  }
  return undefined;
}

function mapValue(entry: Uint8Array): Uint8Array {
  const reader = new BinaryReader(entry);
  let value: Uint8Array = new Uint8Array();
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === 2 && wireType === WireType.LengthDelimited) value = reader.bytes();
    else reader.skip(wireType, number);
  }
  return value;
}

/** `[i]` for the i-th occurrence of a repeated field, counted in `occurrences`; nothing for others. */
function indexOf(field: DescField, occurrences: Map<number, number>): string {
  if (field.fieldKind !== "list") return "";
  const index = occurrences.get(field.number) ?? 0;
  occurrences.set(field.number, index + 1);
  return `[${index}]`;
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
