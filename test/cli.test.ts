// The terminal client (`npx chat-gateway`) as a child process, against the built service and the
// fake upstream: what a person sees on stdout and stderr, its exit status, and what the upstream
// received and when its socket closed.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream, type Reply, type RecordedRequest } from "../src/demo/upstream.js";
import { startServiceProcess, startStack, type ServiceProcess, type Stack } from "./support/processes.js";
import { runCli, startCli } from "./support/cli.js";
import { hold, never } from "./support/gates.js";

let upstream: FakeUpstream;
let stack: Stack;
let reply: (request: RecordedRequest) => Reply;

beforeAll(async () => {
  upstream = await startFakeUpstream({ reply: (r) => reply(r) });
  stack = await startStack({
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-cli-test",
    CHAT_MODEL: "fake-model",
    UPSTREAM_MAX_RETRIES: "0",
  });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

// The same behaviour by both ways to the gateway: gRPC to the service (the default), and --http
// through Envoy with the browser client. Through Envoy, a refusal also names its HTTP status.
describe.each([
  ["over gRPC", () => ["--target", `127.0.0.1:${stack.service.port}`], (_status: number) => ""],
  ["with --http, through Envoy", () => ["--http", `http://127.0.0.1:${stack.envoy.httpPort}`], (status: number) => ` (HTTP ${status})`],
])("chat-gateway %s", (_way, target, http) => {
  it("prints each token as it arrives: the upstream holds token 2 until token 1 is on the terminal", async () => {
    const first = hold();
    reply = () => ({ tokens: ["Rayleigh", " scattering", "."], gate: (i) => (i === 1 ? first.promise : undefined) });
    const cli = startCli([...target(), "why is the sky blue?"]);
    // Token 1 must reach stdout while token 2 is still held upstream; a client that buffered
    // the reply would deadlock here and fail on the test's timeout.
    await cli.printed("Rayleigh");
    expect(cli.stdout()).toBe("Rayleigh");
    first.release();
    expect(await cli.exited).toBe(0);
    expect(cli.stdout()).toBe("Rayleigh scattering.\n");
    // Usage at the end, on stderr, never mixed into the answer.
    expect(cli.stderr()).toMatch(/^stop · fake-model · \d+ prompt \+ 3 completion = \d+ tokens\n$/);
    expect(upstream.requests.at(-1)?.body.messages).toEqual([{ role: "user", content: "why is the sky blue?" }]);
  });

  it("sends --model and --system, and joins the prompt's words", async () => {
    reply = () => ({ tokens: ["ok"] });
    const { code, stdout } = await runCli([...target(), "--model", "other-model", "--system", "Be terse.", "why", "blue?"]);
    expect(code).toBe(0);
    expect(stdout).toBe("ok\n");
    const body = upstream.requests.at(-1)?.body;
    expect(body?.model).toBe("other-model");
    expect(body?.messages).toEqual([
      { role: "system", content: "Be terse." },
      { role: "user", content: "why blue?" },
    ]);
  });

  it("reads the prompt from stdin when none is given", async () => {
    reply = () => ({ tokens: ["read"] });
    const { code, stdout } = await runCli(target(), { stdin: "explain this diff:\n+ a line\n" });
    expect(code).toBe(0);
    expect(stdout).toBe("read\n");
    expect(upstream.requests.at(-1)?.body.messages).toEqual([{ role: "user", content: "explain this diff:\n+ a line\n" }]);
  });

  it("--json prints one event per line, as POST /chat's data lines", async () => {
    reply = () => ({ tokens: ["a", "b"] });
    const { code, stdout, stderr } = await runCli([...target(), "--json", "hi"]);
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.slice(0, 2)).toEqual([{ delta: { text: "a" } }, { delta: { text: "b" } }]);
    expect(lines[2]).toEqual({
      finish: { finishReason: "stop", model: "fake-model", usage: { promptTokens: 1, completionTokens: 2, totalTokens: 3 } },
    });
    expect(lines).toHaveLength(3);
    expect(stderr).toBe("");
  });

  it("Ctrl-C (SIGINT) cancels the call, the upstream socket closes, and it exits 130", async () => {
    reply = () => ({ tokens: ["partial", " never"], gate: (i) => (i === 1 ? never : undefined) });
    const index = upstream.requests.length;
    const cli = startCli([...target(), "tell me a long story"]);
    await cli.printed("partial");
    cli.process.kill("SIGINT");
    expect(await cli.exited).toBe(130);
    // The service aborted its upstream request because the CLI cancelled its call: the
    // held reply never resumes, so only the cancel can end it.
    expect(await upstream.ended(index)).toBe("closed");
    expect(cli.stdout()).toBe("partial\n");
    expect(cli.stderr()).toBe("cancelled (CANCELLED)\n");
  });

  it("cancels the call when stdout is closed early (| head), and exits 141", async () => {
    const first = hold();
    reply = () => ({ tokens: ["one", " two", " three"], gate: (i) => (i === 1 ? first.promise : i === 2 ? never : undefined) });
    const index = upstream.requests.length;
    const cli = startCli([...target(), "count"]);
    await cli.printed("one");
    cli.process.stdout!.destroy();
    first.release();
    expect(await cli.exited).toBe(141);
    expect(await upstream.ended(index)).toBe("closed");
  });

  it.each([
    [400, 3, "INVALID_ARGUMENT", ": upstream rejected the request: bad tokens"],
    [404, 3, "NOT_FOUND", ": upstream has no such model or route"],
    [429, 5, "RESOURCE_EXHAUSTED", ": upstream rate limit reached; retry after 7s"],
    [503, 6, "UNAVAILABLE", ": upstream error 503"],
  ])("an upstream %i before the first token exits %i with the status and message", async (upstreamStatus, exit, name, message) => {
    reply = () => ({ status: upstreamStatus, errorMessage: "bad tokens", headers: { "retry-after": "7" } });
    const { code, stdout, stderr } = await runCli([...target(), "hi"]);
    expect(code).toBe(exit);
    expect(stdout).toBe("");
    expect(stderr).toContain(`error: ${name}${http(upstreamStatus)}${message}`);
  });

  it("with --json, a failure before the first event is one error line", async () => {
    reply = () => ({ status: 400, errorMessage: "bad tokens" });
    const { code, stdout, stderr } = await runCli([...target(), "--json", "hi"]);
    expect(code).toBe(3);
    expect(stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as unknown)).toEqual([
      { error: { code: 3, status: "INVALID_ARGUMENT", message: "upstream rejected the request: bad tokens" } },
    ]);
    expect(stderr).toBe(`error: INVALID_ARGUMENT${http(400)}: upstream rejected the request: bad tokens\n`);
  });

  it("keeps the partial answer and reports an in-band error after it", async () => {
    // The upstream cuts its connection once the partial answer is on the terminal.
    const shown = hold();
    reply = () => ({ tokens: ["half", " an answer"], end: "cut", gate: (i) => (i === 2 ? shown.promise : undefined) });
    const cli = startCli([...target(), "hi"]);
    await cli.printed("half an answer");
    shown.release();
    const code = await cli.exited;
    const [stdout, stderr] = [cli.stdout(), cli.stderr()];
    expect(code).toBe(6);
    expect(stdout).toBe("half an answer\n");
    expect(stderr).toBe("error: UNAVAILABLE: upstream connection lost mid-stream\n");
  });

  it("with --json, an in-band error is the stream's own error event, once", async () => {
    const shown = hold();
    reply = () => ({ tokens: ["half"], end: "cut", gate: (i) => (i === 1 ? shown.promise : undefined) });
    const cli = startCli([...target(), "--json", "hi"]);
    await cli.printed("half");
    shown.release();
    const code = await cli.exited;
    const stdout = cli.stdout();
    expect(code).toBe(6);
    expect(stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as unknown)).toEqual([
      { delta: { text: "half" } },
      { error: { code: 14, status: "UNAVAILABLE", message: "upstream connection lost mid-stream" } },
    ]);
  });

});

describe("chat-gateway with no gateway there", () => {
  it.each([
    ["--target", "127.0.0.1:1"],
    ["--http", "http://127.0.0.1:1"],
  ])("exits 6 when nothing listens at %s", async (flag, where) => {
    const { code, stderr } = await runCli([flag, where, "hi"]);
    expect(code).toBe(6);
    expect(stderr).toMatch(/^error: UNAVAILABLE: /);
  });
});

describe("chat-gateway's command line", () => {
  it("--help reads as a manual: usage, flags, examples, exit codes", async () => {
    const { code, stdout } = await runCli(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toContain("Usage: chat-gateway [options] [prompt...]");
    for (const flag of ["--model <name>", "--system <text>", "--target <host:port>", "--key <key>", "--json", "--http <url>"]) {
      expect(stdout).toContain(flag);
    }
    expect(stdout).toContain("130  interrupted (Ctrl-C)");
  });

  it.each([
    ["an unknown flag", ["--nope", "hi"], "unknown option '--nope'"],
    ["a --target that is not host:port", ["--target", "localhost", "hi"], "must be host:port"],
    ["an --http that is not a URL", ["--http", "localhost:8080", "hi"], "must be an http: or https: URL"],
    ["--http beside --target", ["--http", "http://127.0.0.1:1", "--target", "127.0.0.1:1", "hi"], "cannot be used with option"],
    ["no prompt and nothing on stdin", [], "no prompt"],
  ])("exits 2 on %s", async (_name, args, message) => {
    const { code, stdout, stderr } = await runCli(args);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toContain(message);
  });
});

describe("chat-gateway with caller keys", () => {
  let keyed: ServiceProcess;
  beforeAll(async () => {
    keyed = await startServiceProcess({
      OPENAI_BASE_URL: upstream.baseURL,
      OPENAI_API_KEY: "sk-cli-test",
      CHAT_MODEL: "fake-model",
      CALLER_KEYS: "cli cli-caller-key-0123456789",
    });
  });
  afterAll(async () => {
    await keyed?.stop("SIGKILL");
  });

  it.each([
    ["--key", (args: string[]) => ({ args: [...args, "--key", "cli-caller-key-0123456789"], env: {} })],
    ["CHAT_GATEWAY_KEY", (args: string[]) => ({ args, env: { CHAT_GATEWAY_KEY: "cli-caller-key-0123456789" } })],
  ])("sends the key given by %s as a bearer token", async (_how, make) => {
    reply = () => ({ tokens: ["allowed"] });
    const { args, env } = make(["--target", `127.0.0.1:${keyed.port}`, "hi"]);
    const { code, stdout } = await runCli(args, { env });
    expect(code).toBe(0);
    expect(stdout).toBe("allowed\n");
  });

  it("exits 4 without a key the gateway accepts, and never prints the key", async () => {
    const { code, stdout, stderr } = await runCli(["--target", `127.0.0.1:${keyed.port}`, "--key", "wrong-key-0123456789", "hi"]);
    expect(code).toBe(4);
    expect(stdout).toBe("");
    expect(stderr).toMatch(/^error: UNAUTHENTICATED: /);
    expect(stderr).not.toContain("wrong-key");
  });
});
