// The terminal client (`npx chat-gateway`) as a child process, against the built service (and Envoy,
// for --http) and the fake upstream: what a person sees on stdout and stderr, its exit status, and
// what the upstream received and when its socket closed. Tests run concurrently: each asks its own
// question, and the upstream answers each question as that test says.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream, type Reply, type RecordedRequest } from "../support/fake-model.js";
import { startServiceProcess, startStack, type ServiceProcess, type Stack } from "../support/processes.js";
import { runCli, startCli } from "../support/cli.js";
import { hold, never } from "../support/gates.js";

let upstream: FakeUpstream;
let stack: Stack;
/** The same service with caller keys required. */
let keyed: ServiceProcess;
const replies = new Map<string, { reply: Reply; arrived: (request: RecordedRequest) => void }>();

beforeAll(async () => {
  upstream = await startFakeUpstream({
    reply: (request) => {
      const said = JSON.stringify(request.body.messages);
      for (const [tag, entry] of replies) {
        if (said.includes(tag)) {
          entry.arrived(request);
          return entry.reply;
        }
      }
      return { status: 500, errorMessage: "no reply set for this question" };
    },
  });
  const env = {
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-cli-test",
    CHAT_MODEL: "fake-model",
    UPSTREAM_MAX_RETRIES: "0",
  };
  [stack, keyed] = await Promise.all([
    startStack(env),
    startServiceProcess({ ...env, CALLER_KEYS: "cli cli-caller-key-0123456789" }),
  ]);
});
afterAll(async () => {
  await Promise.all([stack?.stop(), keyed?.stop("SIGKILL")]);
  await upstream?.close();
});

let asked = 0;
/**
 * A question of the calling test's own (`question` with a tag no other test uses), the upstream's
 * reply to it, and the request the upstream receives for it.
 */
function ask(reply: Reply, question = "why is the sky blue?") {
  const tag = `[q${++asked}]`;
  let arrived!: (request: RecordedRequest) => void;
  const request = new Promise<RecordedRequest>((resolve) => (arrived = resolve));
  replies.set(tag, { reply, arrived });
  return { prompt: `${question} ${tag}`, request };
}

// The same behaviour by both ways to the gateway: gRPC to the service (the default), and --http
// through Envoy with the browser client. Through Envoy, a refusal also names its HTTP status.
describe.concurrent.each([
  ["over gRPC", () => ["--target", `127.0.0.1:${stack.service.port}`], (_status: number) => ""],
  [
    "with --http, through Envoy",
    () => ["--http", `http://127.0.0.1:${stack.envoy.httpPort}`],
    (status: number) => ` (HTTP ${status})`,
  ],
])("chat-gateway %s", (_way, target, http) => {
  it("prints each token as it arrives: the upstream holds token 2 until token 1 is on the terminal", async () => {
    const first = hold();
    const { prompt, request } = ask({
      tokens: ["Rayleigh", " scattering", "."],
      gate: (i) => (i === 1 ? first.promise : undefined),
    });
    const cli = startCli([...target(), prompt]);
    // Token 1 must reach stdout while token 2 is still held upstream; a client that buffered
    // the reply would deadlock here and fail on the test's timeout.
    await cli.printed("Rayleigh");
    expect(cli.stdout()).toBe("Rayleigh");
    first.release();
    expect(await cli.exited).toBe(0);
    expect(cli.stdout()).toBe("Rayleigh scattering.\n");
    // Usage at the end, on stderr, never mixed into the answer.
    expect(cli.stderr()).toMatch(/^stop · fake-model · \d+ prompt \+ 3 completion = \d+ tokens\n$/);
    expect((await request).body.messages).toEqual([{ role: "user", content: prompt }]);
  });

  it("--json prints one event per line, as POST /chat's data lines", async () => {
    const { prompt } = ask({ tokens: ["a", "b"] });
    const { code, stdout, stderr } = await runCli([...target(), "--json", prompt]);
    expect(code).toBe(0);
    const lines = stdout
      .trimEnd()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.slice(0, 2)).toEqual([{ delta: { text: "a" } }, { delta: { text: "b" } }]);
    expect(lines[2]).toMatchObject({
      finish: { finishReason: "stop", model: "fake-model", usage: { completionTokens: 2 } },
    });
    expect(lines).toHaveLength(3);
    expect(stderr).toBe("");
  });

  it("Ctrl-C (SIGINT) cancels the call, the upstream socket closes, and it exits 130", async () => {
    const { prompt, request } = ask({ tokens: ["partial", " never"], gate: (i) => (i === 1 ? never : undefined) });
    const cli = startCli([...target(), prompt]);
    await cli.printed("partial");
    cli.process.kill("SIGINT");
    expect(await cli.exited).toBe(130);
    // The held reply never resumes: only the cancel, passed on by the service, can end it.
    expect(await upstream.ended((await request).index)).toBe("closed");
    expect(cli.stdout()).toBe("partial\n");
    expect(cli.stderr()).toBe("cancelled (CANCELLED)\n");
  });

  it.each([
    [400, 3, "INVALID_ARGUMENT", ": upstream rejected the request: bad tokens"],
    [429, 5, "RESOURCE_EXHAUSTED", ": upstream rate limit reached; retry after 7s"],
    [503, 6, "UNAVAILABLE", ": upstream error 503"],
  ])(
    "an upstream %i before the first token exits %i with the status and message",
    async (upstreamStatus, exit, name, message) => {
      const { prompt } = ask({ status: upstreamStatus, errorMessage: "bad tokens", headers: { "retry-after": "7" } });
      const { code, stdout, stderr } = await runCli([...target(), prompt]);
      expect(code).toBe(exit);
      expect(stdout).toBe("");
      expect(stderr).toBe(`error: ${name}${http(upstreamStatus)}${message}\n`);
    },
  );

  it("with --json, a failure before the first event is one error line", async () => {
    const { prompt } = ask({ status: 400, errorMessage: "bad tokens" });
    const { code, stdout, stderr } = await runCli([...target(), "--json", prompt]);
    expect(code).toBe(3);
    expect(
      stdout
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l) as unknown),
    ).toEqual([
      { error: { code: 3, status: "INVALID_ARGUMENT", message: "upstream rejected the request: bad tokens" } },
    ]);
    expect(stderr).toBe(`error: INVALID_ARGUMENT${http(400)}: upstream rejected the request: bad tokens\n`);
  });

  it("keeps the partial answer and reports an in-band error after it", async () => {
    // The upstream cuts its connection once the partial answer is on the terminal.
    const shown = hold();
    const { prompt } = ask({
      tokens: ["half", " an answer"],
      end: "cut",
      gate: (i) => (i === 2 ? shown.promise : undefined),
    });
    const cli = startCli([...target(), prompt]);
    await cli.printed("half an answer");
    shown.release();
    expect(await cli.exited).toBe(6);
    expect(cli.stdout()).toBe("half an answer\n");
    expect(cli.stderr()).toBe("error: UNAVAILABLE: upstream connection lost mid-stream\n");
  });

  it("with --json, an in-band error is the stream's own error event, once", async () => {
    const shown = hold();
    const { prompt } = ask({ tokens: ["half"], end: "cut", gate: (i) => (i === 1 ? shown.promise : undefined) });
    const cli = startCli([...target(), "--json", prompt]);
    await cli.printed("half");
    shown.release();
    expect(await cli.exited).toBe(6);
    expect(
      cli
        .stdout()
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l) as unknown),
    ).toEqual([
      { delta: { text: "half" } },
      { error: { code: 14, status: "UNAVAILABLE", message: "upstream connection lost mid-stream" } },
    ]);
  });
});

// What does not depend on the way to the gateway: the request the flags and stdin make, and a closed
// stdout (which cancels through the same signal as Ctrl-C). Over gRPC.
describe.concurrent("chat-gateway's request and output", () => {
  const target = () => ["--target", `127.0.0.1:${stack.service.port}`];

  it("sends --model and --system, and joins the prompt's words", async () => {
    const { prompt, request } = ask({ tokens: ["ok"] }, "why");
    const { code, stdout } = await runCli([
      ...target(),
      "--model",
      "other-model",
      "--system",
      "Be terse.",
      ...prompt.split(" "),
    ]);
    expect(code).toBe(0);
    expect(stdout).toBe("ok\n");
    const { body } = await request;
    expect(body.model).toBe("other-model");
    expect(body.messages).toEqual([
      { role: "system", content: "Be terse." },
      { role: "user", content: prompt },
    ]);
  });

  it("reads the prompt from stdin when none is given", async () => {
    const { prompt, request } = ask({ tokens: ["read"] }, "explain this diff:\n+ a line");
    const { code, stdout } = await runCli(target(), { stdin: `${prompt}\n` });
    expect(code).toBe(0);
    expect(stdout).toBe("read\n");
    expect((await request).body.messages).toEqual([{ role: "user", content: `${prompt}\n` }]);
  });

  it("cancels the call when stdout is closed early (| head), and exits 141", async () => {
    const first = hold();
    const { prompt, request } = ask({
      tokens: ["one", " two", " three"],
      gate: (i) => (i === 1 ? first.promise : i === 2 ? never : undefined),
    });
    const cli = startCli([...target(), prompt]);
    await cli.printed("one");
    cli.process.stdout!.destroy();
    first.release();
    expect(await cli.exited).toBe(141);
    expect(await upstream.ended((await request).index)).toBe("closed");
  });
});

describe.concurrent("chat-gateway with no gateway there", () => {
  it.each([
    ["--target", "127.0.0.1:1"],
    ["--http", "http://127.0.0.1:1"],
  ])("exits 6 when nothing listens at %s", async (flag, where) => {
    const { code, stderr } = await runCli([flag, where, "hi"]);
    expect(code).toBe(6);
    expect(stderr).toMatch(/^error: UNAVAILABLE: /);
  });
});

describe.concurrent("chat-gateway's command line", () => {
  it("--help reads as a manual: usage, flags, examples, exit codes", async () => {
    const { code, stdout } = await runCli(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("Usage: chat-gateway [options] [prompt...]");
    for (const flag of [
      "--model <name>",
      "--system <text>",
      "--target <host:port>",
      "--key <key>",
      "--json",
      "--http <url>",
    ]) {
      expect(stdout).toContain(flag);
    }
    expect(stdout).toContain("130  interrupted (Ctrl-C)");
  });

  it.each([
    ["an unknown flag", ["--nope", "hi"], "unknown option '--nope'"],
    ["a --target that is not host:port", ["--target", "localhost", "hi"], "must be host:port"],
    ["an --http that is not a URL", ["--http", "localhost:8080", "hi"], "must be an http: or https: URL"],
    [
      "--http beside --target",
      ["--http", "http://127.0.0.1:1", "--target", "127.0.0.1:1", "hi"],
      "cannot be used with option",
    ],
    ["no prompt and nothing on stdin", [], "no prompt"],
  ])("exits 2 on %s", async (_name, args, message) => {
    const { code, stdout, stderr } = await runCli(args);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toContain(message);
  });
});

describe.concurrent("chat-gateway with caller keys", () => {
  it.each([
    ["--key", (prompt: string) => ({ args: [prompt, "--key", "cli-caller-key-0123456789"], env: {} })],
    [
      "CHAT_GATEWAY_KEY",
      (prompt: string) => ({ args: [prompt], env: { CHAT_GATEWAY_KEY: "cli-caller-key-0123456789" } }),
    ],
  ])("sends the key given by %s as a bearer token", async (_how, make) => {
    const { prompt } = ask({ tokens: ["allowed"] });
    const { args, env } = make(prompt);
    const { code, stdout } = await runCli(["--target", `127.0.0.1:${keyed.port}`, ...args], { env });
    expect(code).toBe(0);
    expect(stdout).toBe("allowed\n");
  });

  it("exits 4 without a key the gateway accepts, and never prints the key", async () => {
    const { code, stdout, stderr } = await runCli([
      "--target",
      `127.0.0.1:${keyed.port}`,
      "--key",
      "wrong-key-0123456789",
      "hi",
    ]);
    expect(code).toBe(4);
    expect(stdout).toBe("");
    expect(stderr).toMatch(/^error: UNAUTHENTICATED: /);
    expect(stderr).not.toContain("wrong-key");
  });
});
