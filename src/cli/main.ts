// `chat-gateway "why is the sky blue?"`: one Chat call, its reply streamed to the terminal.
// Runs from dist/ (bin/chat-gateway.js checks Node and the build first, then imports this).
import { readFileSync } from "node:fs";
import { ChatRequest } from "../contract/web.js";
import { parseArgs, type CliOptions } from "./args.js";
import { CallFailed, type OpenChat } from "./call.js";
import { EXIT, exitCodeFor } from "./exit-codes.js";
import { jsonRenderer, textRenderer } from "./render.js";

export interface Io {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

const VERSION = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/** Runs the command line; resolves with the exit status. Ctrl-C (SIGINT) cancels the call. */
export async function run(argv: readonly string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, { writeOut: (t) => io.stdout.write(t), writeErr: (t) => io.stderr.write(t) }, VERSION);
  if ("exit" in parsed) return parsed.exit;
  const { options } = parsed;

  const text = options.prompt ?? (io.stdin.isTTY ? undefined : await readAll(io.stdin));
  if (!text?.trim()) {
    io.stderr.write('error: no prompt: give it as arguments (chat-gateway "why is the sky blue?") or on stdin\n');
    return EXIT.usage;
  }
  const request = ChatRequest.fromPartial({
    text,
    model: options.model ?? "",
    messages: options.system ? [{ role: "system", content: options.system }] : [],
  });

  const controller = new AbortController();
  let stopped: number | undefined;
  const stop = (code: number) => {
    // A second Ctrl-C does not wait for the cancel to be sent.
    if (stopped !== undefined && code === EXIT.interrupted) process.exit(code);
    stopped ??= code;
    controller.abort();
  };
  const onSigint = () => stop(EXIT.interrupted);
  const onOutError = (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") stop(EXIT.brokenPipe);
  };
  process.on("SIGINT", onSigint);
  io.stdout.on("error", onOutError);

  const render = options.json ? jsonRenderer(io.stdout, io.stderr) : textRenderer(io.stdout, io.stderr);
  try {
    const chat = await open(options);
    for await (const event of chat(request, controller.signal)) {
      if (stopped !== undefined) break;
      render.event(event);
    }
    if (stopped !== undefined) return interrupted(stopped, render, io);
    render.close();
    return EXIT.ok;
  } catch (error) {
    if (stopped !== undefined) return interrupted(stopped, render, io);
    if (error instanceof CallFailed) {
      render.failed(error);
      return exitCodeFor(error.code);
    }
    render.close();
    io.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT.failed;
  } finally {
    process.off("SIGINT", onSigint);
  }
}

/** The transport, loaded only when used: grpc-js alone takes longer to load than the rest. */
async function open(options: CliOptions): Promise<OpenChat> {
  // Resumed by default: a dropped connection costs a pause, not the answer.
  const resume = options.resume ? {} : undefined;
  if (options.http) return (await import("./http.js")).httpChat(options.http, options.key, resume);
  return (await import("./grpc.js")).grpcChat(options.target, options.key, resume);
}

function interrupted(code: number, render: { close(): void }, io: Io): number {
  render.close();
  if (code === EXIT.interrupted) io.stderr.write("cancelled (CANCELLED)\n");
  return code;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = "";
  stream.setEncoding("utf8");
  for await (const chunk of stream) text += chunk as string;
  return text;
}
