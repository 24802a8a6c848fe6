// The terminal client as a user runs it: `bin/chat-gateway.js` (which runs dist/cli/) in a child
// process, its stdout and stderr read as they arrive.
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "../../src/dev/envoy.js";

export interface CliProcess {
  readonly process: ChildProcess;
  /** Everything written so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout holds `text`; rejects if the process exits first. */
  printed(text: string): Promise<void>;
  /** The same for stderr. */
  printedOnStderr(text: string): Promise<void>;
  /** The exit status, or the name of the signal that killed it. */
  readonly exited: Promise<number | string>;
}

export function startCli(args: string[], options: { stdin?: string; env?: Record<string, string> } = {}): CliProcess {
  const child = spawn(process.execPath, [join(ROOT, "bin", "chat-gateway.js"), ...args], {
    // No terminal and no inherited CHAT_GATEWAY_* variables: what the test gives is what it gets.
    // Unstyled unless the test forces styling (Node warns when it sees both variables).
    env: {
      PATH: process.env.PATH ?? "",
      ...(options.env?.FORCE_COLOR === undefined && { NO_COLOR: "1" }),
      ...options.env,
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  const waiting = new Set<() => void>();
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk;
    for (const check of waiting) check();
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    err += chunk;
    for (const check of waiting) check();
  });
  // A process killed by a signal has no exit status: it resolves with the signal's name, which no
  // expected status equals (a client that died of SIGINT did not handle it). On "close", not
  // "exit": "exit" can come before the last bytes it wrote to stdout have been read here.
  const exited = new Promise<number | string>((resolve) =>
    child.once("close", (code, signal) => resolve(code ?? String(signal))),
  );
  child.stdin!.on("error", () => undefined);
  child.stdin!.end(options.stdin ?? "");

  const printed = (where: () => string, text: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (where().includes(text)) {
          waiting.delete(check);
          resolve();
        }
      };
      waiting.add(check);
      check();
      void exited.then((code) =>
        reject(new Error(`chat-gateway exited (${code}) before printing ${JSON.stringify(text)}:\n${out}\n${err}`)),
      );
    });

  return {
    process: child,
    stdout: () => out,
    stderr: () => err,
    printed: (text) => printed(() => out, text),
    printedOnStderr: (text) => printed(() => err, text),
    exited,
  };
}

/** Runs the client to its end. */
export async function runCli(args: string[], options: { stdin?: string; env?: Record<string, string> } = {}) {
  const cli = startCli(args, options);
  const code = await cli.exited;
  return { code, stdout: cli.stdout(), stderr: cli.stderr() };
}
