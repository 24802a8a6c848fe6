// A gRPC client written frame by frame over one TCP connection, for what grpc-js cannot be made to
// do: it cuts a request's header block into frames of the size the server advertises
// (SETTINGS_MAX_FRAME_SIZE), as clients built on Python's h2 (grpclib) or written by hand do, where
// grpc-js, Node and curl (nghttp2) always cut it into 16 KiB frames. Header fields go out as HPACK
// literals without indexing or Huffman coding, so nothing is shared between streams; the server's
// header blocks are not decoded (a stream's replies are read from its DATA frames).
import { connect, type Socket } from "node:net";
import { ChatRequest, ChatResponse } from "../../src/gen/chat/v1/chat.js";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PING = 0x6;
const GOAWAY = 0x7;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const ACK = 0x1;
const SETTINGS_MAX_FRAME_SIZE = 0x5;

export interface RawStream {
  /** The ChatResponses read so far. */
  readonly responses: ChatResponse[];
  /** Resolves when the server ends the stream: `end` (trailers), `reset <code>`, or `goaway <code>`. */
  readonly ended: Promise<string>;
  /** Resolves when the first response has arrived. */
  readonly answered: Promise<void>;
}

export interface RawClient {
  /** The server's SETTINGS_MAX_FRAME_SIZE (16384 unless it advertises more). */
  readonly maxFrameSize: number;
  /** Calls Chat with `text` and extra request headers, the header block cut into `maxFrameSize` frames. */
  chat(text: string, headers?: [string, string][]): RawStream;
  close(): void;
}

interface Open {
  responses: ChatResponse[];
  data: Buffer;
  end: (outcome: string) => void;
  answer: () => void;
}

export async function rawClient(port: number): Promise<RawClient> {
  const socket: Socket = connect(port, "127.0.0.1");
  socket.on("error", () => undefined);
  const open = new Map<number, Open>();
  let nextId = 1;
  let maxFrameSize = 16384;
  let goaway: string | undefined;
  let settled!: () => void;
  const settingsRead = new Promise<void>((resolve) => (settled = resolve));
  const endAll = (outcome: string) => {
    for (const stream of open.values()) stream.end(outcome);
    open.clear();
  };
  const frame = (type: number, flags: number, id: number, payload: Buffer) => {
    const head = Buffer.alloc(9);
    head.writeUIntBE(payload.length, 0, 3);
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(id, 5);
    return Buffer.concat([head, payload]);
  };
  const onFrame = (type: number, flags: number, id: number, payload: Buffer) => {
    if (type === SETTINGS && (flags & ACK) === 0) {
      for (let at = 0; at + 6 <= payload.length; at += 6) {
        if (payload.readUInt16BE(at) === SETTINGS_MAX_FRAME_SIZE) maxFrameSize = payload.readUInt32BE(at + 2);
      }
      socket.write(frame(SETTINGS, ACK, 0, Buffer.alloc(0)));
      settled();
    } else if (type === PING && (flags & ACK) === 0) {
      socket.write(frame(PING, ACK, 0, payload));
    } else if (type === GOAWAY) {
      goaway = `goaway ${payload.readUInt32BE(4)}`;
      endAll(goaway);
    } else if (type === RST_STREAM) {
      open.get(id)?.end(`reset ${payload.readUInt32BE(0)}`);
      open.delete(id);
    } else if (type === DATA || type === HEADERS) {
      const stream = open.get(id);
      if (stream === undefined) return;
      if (type === DATA) {
        // gRPC's framing: a flag byte and a 4-byte length before each message.
        stream.data = Buffer.concat([stream.data, payload]);
        while (stream.data.length >= 5 && stream.data.length >= 5 + stream.data.readUInt32BE(1)) {
          const length = stream.data.readUInt32BE(1);
          stream.responses.push(ChatResponse.decode(stream.data.subarray(5, 5 + length)));
          stream.data = stream.data.subarray(5 + length);
          stream.answer();
        }
      }
      if (flags & END_STREAM) {
        stream.end("end");
        open.delete(id);
      }
    }
  };
  let pending = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 9 && pending.length >= 9 + pending.readUIntBE(0, 3)) {
      const length = pending.readUIntBE(0, 3);
      onFrame(pending[3]!, pending[4]!, pending.readUInt32BE(5) & 0x7fffffff, pending.subarray(9, 9 + length));
      pending = pending.subarray(9 + length);
    }
  });
  socket.on("close", () => endAll(goaway ?? "closed"));
  socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, Buffer.alloc(0))]));
  await settingsRead;

  return {
    get maxFrameSize() {
      return maxFrameSize;
    },
    chat(text, extra = []) {
      const id = nextId;
      nextId += 2;
      let end!: (outcome: string) => void;
      let answer!: () => void;
      const ended = new Promise<string>((resolve) => (end = resolve));
      const answered = new Promise<void>((resolve) => (answer = resolve));
      const responses: ChatResponse[] = [];
      if (goaway !== undefined) end(goaway);
      else open.set(id, { responses, data: Buffer.alloc(0), end, answer });
      const block = Buffer.concat(
        [
          [":method", "POST"],
          [":scheme", "http"],
          [":path", "/chat.v1.ChatService/Chat"],
          [":authority", `127.0.0.1:${port}`],
          ["content-type", "application/grpc"],
          ["te", "trailers"],
          ...extra,
        ].map(([name, value]) => literal(name!, value!)),
      );
      const frames: Buffer[] = [];
      for (let at = 0; at < block.length || at === 0; at += maxFrameSize) {
        const last = at + maxFrameSize >= block.length;
        frames.push(
          frame(at === 0 ? HEADERS : CONTINUATION, last ? END_HEADERS : 0, id, block.subarray(at, at + maxFrameSize)),
        );
      }
      const message = Buffer.from(ChatRequest.encode(ChatRequest.fromPartial({ text })).finish());
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(message.length, 1);
      frames.push(frame(DATA, END_STREAM, id, Buffer.concat([prefix, message])));
      socket.write(Buffer.concat(frames));
      return { responses, ended, answered };
    },
    close() {
      socket.destroy();
    },
  };
}

/** An HPACK "literal header field without indexing, new name", neither string Huffman-coded. */
function literal(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)]);
}

function hpackString(text: string): Buffer {
  const bytes = Buffer.from(text, "latin1");
  return Buffer.concat([hpackInteger(bytes.length, 7), bytes]);
}

/** RFC 7541 §5.1: an integer with an N-bit prefix (the prefix's other bits, here H, left 0). */
function hpackInteger(value: number, prefixBits: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([value]);
  const out = [max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}
