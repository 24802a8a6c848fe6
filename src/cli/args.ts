// The command line, parsed by commander: flags, their environment variables, and --help.
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";

export interface CliOptions {
  /** The prompt words, joined; undefined when none were given (read stdin then). */
  prompt: string | undefined;
  model: string | undefined;
  system: string | undefined;
  target: string;
  key: string | undefined;
  json: boolean;
  /** Envoy's URL: call POST /chat through it instead of gRPC. */
  http: string | undefined;
  /** Send the request resumable and re-attach when the connection drops (default; --no-resume). */
  resume: boolean;
}

export type Parsed = { options: CliOptions } | { exit: number };

export interface HelpOutput {
  writeOut(text: string): void;
  writeErr(text: string): void;
}

const EXAMPLES = `
Examples:
  $ chat-gateway "why is the sky blue?"
  $ git diff | chat-gateway --system "Review this diff. Be brief."
  $ chat-gateway --model deepseek-reasoner --json "2+2?" | jq -c .
  $ chat-gateway --http http://localhost:8080 --key "$KEY" "hello"

The answer goes to stdout as it arrives; reasoning (dimmed), tool calls and the
closing usage line go to stderr. NO_COLOR=1 turns styling off.

Exit status:
  0    the reply finished
  1    other failure (INTERNAL, UNKNOWN, ...)
  2    bad command line (unknown flag, no prompt)
  3    request refused as it is: INVALID_ARGUMENT, NOT_FOUND, ... (HTTP 400, 404)
  4    UNAUTHENTICATED, PERMISSION_DENIED (HTTP 401, 403)
  5    RESOURCE_EXHAUSTED: rate or concurrency limit (HTTP 429)
  6    UNAVAILABLE, DEADLINE_EXCEEDED: gateway or upstream down or slow (HTTP 503, 504)
  130  interrupted (Ctrl-C); the call was cancelled
  141  stdout closed early (| head); the call was cancelled
`;

function httpUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError("not a URL (for example http://localhost:8080)");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new InvalidArgumentError("must be an http: or https: URL");
  return value;
}

function hostPort(value: string): string {
  if (!/^[^\s/]+:\d+$/.test(value)) throw new InvalidArgumentError("must be host:port (for example localhost:50051)");
  return value;
}

export function parseArgs(argv: readonly string[], output: HelpOutput, version: string): Parsed {
  const program = new Command("chat-gateway")
    .description("Ask a model through chat-gateway and watch the answer stream in.")
    .argument("[prompt...]", "what to ask; read from stdin when not given")
    .option("-m, --model <name>", "model to ask instead of the gateway's default (CHAT_MODEL)")
    .option("-s, --system <text>", "system prompt, sent before the question")
    .addOption(
      new Option("-t, --target <host:port>", "the gateway's gRPC address")
        .env("CHAT_GATEWAY_TARGET")
        .default("localhost:50051")
        .argParser(hostPort),
    )
    .addOption(
      new Option(
        "-k, --key <key>",
        "caller key, sent as authorization: Bearer <key>; prefer the variable, which stays out of `ps`",
      ).env("CHAT_GATEWAY_KEY"),
    )
    .option("--json", "print each event as one JSON line on stdout (as POST /chat's data: lines)")
    .addOption(
      new Option(
        "--http <url>",
        "call POST /chat through Envoy at this URL (e.g. http://localhost:8080) instead of gRPC",
      )
        .argParser(httpUrl)
        .conflicts("target"),
    )
    .option(
      "--no-resume",
      "do not re-attach when the connection drops mid-answer (by default the request is resumable and a drop costs a pause, not the answer)",
    )
    .version(version, "-V, --version")
    .helpOption("-h, --help", "show this help")
    .addHelpText("after", EXAMPLES)
    .showHelpAfterError("(run with --help for usage)")
    .configureOutput({ writeOut: output.writeOut, writeErr: output.writeErr })
    .exitOverride();

  try {
    program.parse(argv, { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end with code 0; every parse error is a usage error.
      return { exit: error.exitCode === 0 ? 0 : 2 };
    }
    throw error;
  }
  const opts = program.opts<{
    model?: string;
    system?: string;
    target: string;
    key?: string;
    json?: boolean;
    http?: string;
    resume: boolean;
  }>();
  const words = program.args;
  return {
    options: {
      prompt: words.length > 0 && !(words.length === 1 && words[0] === "-") ? words.join(" ") : undefined,
      model: opts.model,
      system: opts.system,
      target: opts.target,
      key: opts.key,
      json: opts.json === true,
      http: opts.http,
      resume: opts.resume,
    },
  };
}
