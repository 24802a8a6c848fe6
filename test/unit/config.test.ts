// The configuration: one validated read of the environment, every problem reported at once in
// plain words, .env.example documenting every variable, named upstreams and caller keys parsed.
import { problemsOf } from "../support/config.js";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { CONFIG_VARIABLES, loadConfig } from "../../src/server/config.js";
import { ROOT } from "../../src/dev/envoy.js";
import { readFileSync } from "node:fs";

const dir = mkdtempSync(join(tmpdir(), "chat-config-"));

describe("configuration", () => {
  it("has a default for everything but caller keys, which an empty environment is refused for", () => {
    expect(problemsOf({})).toEqual([
      "CALLER_KEYS: caller keys are required: set CALLER_KEYS or CALLER_KEYS_FILE, or set AUTH=none to let any caller in (for example CALLER_KEYS=billing sha256:<64 hex digits> streams=20 rpm=600 tpm=1000000, search <a key of 16+ characters>)",
    ]);
    const config = loadConfig({ AUTH: "none" });
    expect(config.grpc.port).toBe(50051);
    expect(config.metrics).toBeUndefined();
    expect(config.auth).toBeUndefined();
    expect(config.tls).toBeUndefined();
    expect(config.tracing.otlpEndpoint).toBeUndefined();
    expect(config.log).toEqual({ format: "auto", prompts: false });
    expect(config.upstreams).toEqual([]);
  });

  it("reports every problem at once: the variable, what is wrong, and an example of a right value", () => {
    const problems = problemsOf({
      AUTH: "none",
      GRPC_PORT: "eighty",
      METRICS_PORT: "70000",
      LOG_LEVEL: "loud",
      OPENAI_BASE_URL: "ftp://example",
      LOG_PROMPTS: "maybe",
      TLS_CERT_FILE: join(dir, "missing.crt"),
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        "GRPC_PORT: must be a number (for example GRPC_PORT=50051)",
        "METRICS_PORT: must be at most 65535 (for example METRICS_PORT=9464)",
        expect.stringMatching(/^LOG_LEVEL: must be one of fatal, error, .* \(for example LOG_LEVEL=info\)$/),
        "OPENAI_BASE_URL: must be an http:// or https:// URL (for example OPENAI_BASE_URL=http://127.0.0.1:11434/v1)",
        "LOG_PROMPTS: must be one of 0, 1, true, false, yes, no (for example LOG_PROMPTS=false)",
        expect.stringMatching(/^TLS_KEY_FILE: TLS needs both TLS_CERT_FILE and TLS_KEY_FILE/),
        expect.stringMatching(/^TLS_CERT_FILE: cannot read .*missing\.crt: no such file/),
      ]),
    );
    expect(problems).toHaveLength(7);
    expect(() => loadConfig({ GRPC_PORT: "eighty" })).toThrow(
      /invalid configuration:\n {2}- GRPC_PORT: must be a number/,
    );
  });

  it("refuses a conversation lease that a flush could not renew in time", () => {
    expect(() => loadConfig({ AUTH: "none", CONVERSATION_LEASE_MS: "1000", CONVERSATION_FLUSH_MS: "500" })).toThrow(
      /CONVERSATION_LEASE_MS: must be more than twice CONVERSATION_FLUSH_MS/,
    );
    expect(loadConfig({ AUTH: "none" }).conversations).toMatchObject({
      leaseMs: 30_000,
      flushMs: 2_000,
      flushChars: 4_000,
    });
  });

  it("requires caller keys unless AUTH=none, and refuses AUTH=none beside keys", () => {
    expect(loadConfig({ CALLER_KEYS: "ops ops-key-0123456789" }).auth?.keys.map((k) => k.name)).toEqual(["ops"]);
    expect(loadConfig({ AUTH: "keys", CALLER_KEYS: "ops ops-key-0123456789" }).auth?.keys).toHaveLength(1);
    expect(problemsOf({ AUTH: "keys" })).toEqual([expect.stringMatching(/^CALLER_KEYS: caller keys are required/)]);
    expect(problemsOf({ AUTH: "none", CALLER_KEYS: "ops ops-key-0123456789" })).toEqual([
      "AUTH: AUTH=none lets any caller in, but caller keys are set (CALLER_KEYS or CALLER_KEYS_FILE): unset AUTH to require them, or unset the keys (for example AUTH=keys)",
    ]);
    expect(problemsOf({ AUTH: "open" })).toEqual([
      expect.stringMatching(/^AUTH: must be one of keys, none/),
      expect.stringMatching(/^CALLER_KEYS: caller keys are required/),
    ]);
    // A keys file with nothing in it would let nobody in: said at start-up, not found out later.
    const empty = join(dir, "no-keys");
    writeFileSync(empty, "# nobody yet\n");
    expect(problemsOf({ CALLER_KEYS_FILE: empty })).toEqual([
      expect.stringMatching(/^CALLER_KEYS_FILE: holds no caller key, so no caller could call/),
    ]);
  });

  it("never repeats a secret value in a problem", () => {
    const secret = "sk-live-SECRET-0123456789";
    const problems = problemsOf({
      CALLER_KEYS: `ops ${secret} lots`,
      UPSTREAM_X_API_KEY: secret,
      UPSTREAM_X_BASE_URL: `not a url ${secret}`,
      OPENAI_BASE_URL: `https://${secret}@`,
    });
    expect(problems.length).toBeGreaterThanOrEqual(3);
    expect(problems.join("\n")).not.toContain("SECRET");
  });

  it("refuses the openai SDK's OPENAI_CUSTOM_HEADERS, which would reach every upstream", () => {
    expect(problemsOf({ AUTH: "none", OPENAI_CUSTOM_HEADERS: "x-secret: abc" })).toEqual([
      "OPENAI_CUSTOM_HEADERS: not supported: the openai SDK would send these headers to every upstream, whatever its key; unset it",
    ]);
  });

  it(".env.example documents every variable of the schema with its default", () => {
    const example = readFileSync(join(ROOT, ".env.example"), "utf8");
    const documented = new Map(
      [...example.matchAll(/^([A-Z][A-Z0-9_]*)=(.*)$/gm)].map((m) => [m[1] ?? "", m[2] ?? ""] as const),
    );
    for (const name of CONFIG_VARIABLES) expect(documented.has(name), `${name} in .env.example`).toBe(true);
    // The documented defaults are the real ones: loading the file's values gives the default config
    // (keys required; with AUTH=none for both, as the file leaves CALLER_KEYS empty).
    expect(documented.get("AUTH")).toBe("keys");
    expect(problemsOf(Object.fromEntries(documented))).toEqual(problemsOf({}));
    expect(loadConfig({ ...Object.fromEntries(documented), AUTH: "none" })).toEqual(loadConfig({ AUTH: "none" }));
    for (const suffix of ["BASE_URL", "API_KEY", "MODELS"]) expect(example).toContain(`UPSTREAM_<NAME>_${suffix}`);
  });

  it("reads named upstreams, and says what is missing from one", () => {
    const config = loadConfig({
      AUTH: "none",
      UPSTREAM_DEEPSEEK_BASE_URL: "https://api.deepseek.com/v1",
      UPSTREAM_DEEPSEEK_API_KEY: "sk-ds",
      UPSTREAM_DEEPSEEK_MODELS: "deepseek-chat, deepseek-reasoner",
      UPSTREAM_LOCAL_BASE_URL: "http://127.0.0.1:11434/v1",
      UPSTREAM_LOCAL_MODELS: "llama*",
    });
    expect(config.upstreams).toEqual([
      {
        name: "deepseek",
        baseURL: "https://api.deepseek.com/v1",
        apiKey: "sk-ds",
        models: ["deepseek-chat", "deepseek-reasoner"],
      },
      { name: "local", baseURL: "http://127.0.0.1:11434/v1", apiKey: undefined, models: ["llama*"] },
    ]);
    expect(
      problemsOf({
        AUTH: "none",
        UPSTREAM_A_MODELS: "m1",
        UPSTREAM_B_BASE_URL: "http://127.0.0.1:1/v1",
        UPSTREAM_C_BASE_URL: "http://127.0.0.1:2/v1",
        UPSTREAM_C_MODELS: "m1",
        UPSTREAM_D_BASEURL: "http://x",
      }),
    ).toEqual(
      expect.arrayContaining([
        'UPSTREAM_A_BASE_URL: upstream "a" has no base URL (for example UPSTREAM_A_BASE_URL=https://api.deepseek.com/v1)',
        expect.stringMatching(/^UPSTREAM_B_MODELS: upstream "b" serves no model/),
        expect.stringMatching(/^UPSTREAM_C_MODELS: model "m1" is also served by upstream "a"/),
        expect.stringMatching(/^UPSTREAM_D_BASEURL: not a setting/),
      ]),
    );
  });

  it("reads caller keys from the environment and a file, plain or hashed, with stream limits", () => {
    const hashed = createHash("sha256").update("billing-key-0123456789").digest("hex");
    const file = join(dir, "keys");
    writeFileSync(file, `# callers\nbilling sha256:${hashed} 20\n\nsearch search-key-0123456789\n`);
    const config = loadConfig({ CALLER_KEYS: "ops ops-key-0123456789 2", CALLER_KEYS_FILE: file });
    expect(config.auth?.keys.map((k) => [k.name, k.limits, k.digest.toString("hex")])).toEqual([
      ["ops", { streams: 2 }, createHash("sha256").update("ops-key-0123456789").digest("hex")],
      ["billing", { streams: 20 }, hashed],
      ["search", {}, createHash("sha256").update("search-key-0123456789").digest("hex")],
    ]);
    expect(
      problemsOf({ CALLER_KEYS: "a short, b sha256:abc, c long-enough-key-0000 0, a long-enough-key-1111, ! x" }),
    ).toEqual([
      expect.stringMatching(/^CALLER_KEYS: caller "a": the key is shorter than 16 characters/),
      expect.stringMatching(/^CALLER_KEYS: caller "b": a hashed key must be "sha256:" followed by 64 hex digits/),
      expect.stringMatching(/^CALLER_KEYS: caller "c": the stream limit must be a whole number/),
      expect.stringMatching(/^CALLER_KEYS: entry 5: a caller name/),
    ]);
    expect(problemsOf({ CALLER_KEYS: "a long-enough-key-0000, a long-enough-key-1111" })).toEqual([
      expect.stringMatching(/^CALLER_KEYS: the caller name "a" is used twice/),
    ]);
  });

  it("reads each caller key's limits as options after the key, the older bare stream limit included", () => {
    const file = join(dir, "keys-with-limits");
    writeFileSync(
      file,
      [
        "billing billing-key-0123456789 streams=20 rpm=600 tpm=100000",
        "search search-key-0123456789 tpm=5000",
        "old old-key-0123456789 3 rpm=10",
        "open open-key-0123456789",
      ].join("\n"),
    );
    expect(loadConfig({ CALLER_KEYS_FILE: file }).auth?.keys.map((k) => [k.name, k.limits])).toEqual([
      ["billing", { streams: 20, rpm: 600, tpm: 100000 }],
      ["search", { tpm: 5000 }],
      ["old", { streams: 3, rpm: 10 }],
      ["open", {}],
    ]);
    const secret = "sekrit-part-of-a-key";
    const problems = problemsOf({
      CALLER_KEYS: [
        "a long-enough-key-0000 rpm=0",
        "b long-enough-key-0000 tpm=1.5",
        "c long-enough-key-0000 burst=3",
        "d long-enough-key-0000 2 streams=3",
        "e long-enough-key-0000 rpm=1 rpm=2",
        `f long-enough-key-0000 ${secret}`,
        "g long-enough-key-0000 rpm=5 7",
      ].join(", "),
    });
    expect(problems).toEqual([
      expect.stringMatching(
        /^CALLER_KEYS: caller "a": rpm \(requests per minute\) must be a whole number of at least 1/,
      ),
      expect.stringMatching(/^CALLER_KEYS: caller "b": tpm \(tokens per minute\) must be a whole number of at least 1/),
      expect.stringMatching(
        /^CALLER_KEYS: caller "c": field 3 is not an option; expected "<name> <key> \[<max streams>\] \[streams=N\] \[rpm=N\] \[tpm=N\]"/,
      ),
      expect.stringMatching(/^CALLER_KEYS: caller "d": the stream limit is given twice/),
      expect.stringMatching(/^CALLER_KEYS: caller "e": "rpm" is given twice/),
      expect.stringMatching(/^CALLER_KEYS: caller "f": the stream limit must be a whole number/),
      expect.stringMatching(/^CALLER_KEYS: caller "g": field 4 is not an option/),
    ]);
    // A stray word (part of a key written with a space) is never quoted back.
    expect(problems.join("\n")).not.toContain(secret);
  });

  it("reads where the limits are kept, and refuses a REDIS_URL that is not one", () => {
    expect(loadConfig({ AUTH: "none" }).budgets).toEqual({
      redisUrl: undefined,
      onRedisError: "open",
      timeoutMs: 250,
      leaseTtlMs: 15000,
    });
    expect(
      loadConfig({
        AUTH: "none",
        REDIS_URL: "rediss://:pw@redis.internal:6380",
        LIMITS_ON_REDIS_ERROR: "closed",
        LIMITS_REDIS_TIMEOUT_MS: "100",
        LIMITS_LEASE_TTL_MS: "6000",
      }).budgets,
    ).toEqual({
      redisUrl: "rediss://:pw@redis.internal:6380",
      onRedisError: "closed",
      timeoutMs: 100,
      leaseTtlMs: 6000,
    });
    expect(
      problemsOf({
        AUTH: "none",
        REDIS_URL: "http://:pw@redis:6379",
        LIMITS_ON_REDIS_ERROR: "maybe",
        LIMITS_LEASE_TTL_MS: "10",
      }),
    ).toEqual([
      "REDIS_URL: must be a redis:// or rediss:// URL (for example REDIS_URL=redis://redis:6379)",
      "LIMITS_ON_REDIS_ERROR: must be one of open, closed (for example LIMITS_ON_REDIS_ERROR=closed)",
      "LIMITS_LEASE_TTL_MS: must be at least 300 (for example LIMITS_LEASE_TTL_MS=15000)",
    ]);
  });
});
