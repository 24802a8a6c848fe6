// The transport floor under the TTFT targets: the time to a first response byte between two Node
// processes on this machine, for raw node:http2 and for grpc-js (a server-streaming call whose
// handler writes one message at once), measured sequentially like the bench's TTFT.
//   node --import tsx bench/floor.ts [samples]        (the bench runs it as part of the TTFT section)
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { once } from "node:events";
import http2 from "node:http2";
import { pathToFileURL } from "node:url";
import { Server, ServerCredentials, type ServerWritableStream } from "@grpc/grpc-js";
import { ChatServiceService, type ChatRequest, type ChatResponse } from "../src/gen/chat/v1/chat.js";
import { grpcClient } from "./clients.js";
import { percentile } from "./measure.js";

export interface Floor {
  http2P50Ms: number;
  grpcP50Ms: number;
}

async function serve(): Promise<void> {
  const h2 = http2.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200);
      res.end("x");
    });
  });
  h2.listen(0, "127.0.0.1");
  await once(h2, "listening");
  const grpc = new Server();
  grpc.addService(ChatServiceService, {
    chat: (call: ServerWritableStream<ChatRequest, ChatResponse>) => {
      call.write({ event: { $case: "delta", value: { text: "x" } } });
      call.end();
    },
  });
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpc.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve(port))),
  );
  process.stdout.write(`${JSON.stringify({ h2: (h2.address() as { port: number }).port, grpc: grpcPort })}\n`);
}

export async function measureFloor(samples: number): Promise<Floor> {
  const child = spawn(process.execPath, ["--import", "tsx", new URL(import.meta.url).pathname, "--serve"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const [line] = (await once(createInterface({ input: child.stdout! }), "line")) as [string];
    const ports = JSON.parse(line) as { h2: number; grpc: number };
    const session = http2.connect(`http://127.0.0.1:${ports.h2}`);
    const client = grpcClient(ports.grpc, 1);
    const h2Times: number[] = [];
    const grpcTimes: number[] = [];
    const warm = Math.min(50, samples);
    for (let i = 0; i < samples + warm; i++) {
      const started = performance.now();
      await new Promise<void>((resolve) => {
        const req = session.request({ ":method": "POST", ":path": "/" });
        req.end("hello");
        req.once("data", () => i >= warm && h2Times.push(performance.now() - started));
        req.on("end", resolve);
        req.resume();
      });
      const reply = await client.chat("hello");
      if (i >= warm && reply.ttftMs !== undefined) grpcTimes.push(reply.ttftMs);
    }
    session.close();
    client.close();
    return { http2P50Ms: percentile(h2Times, 50), grpcP50Ms: percentile(grpcTimes, 50) };
  } finally {
    child.kill();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes("--serve")) await serve();
  else process.stdout.write(`${JSON.stringify(await measureFloor(Number(process.argv[2] ?? 500)))}\n`);
}
