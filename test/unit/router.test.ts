// Several named upstreams: a request's model picks its upstream (exact name or prefix), every other
// model goes to the default one, each with its own key; the log line and metrics name the upstream.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status } from "@grpc/grpc-js";
import { collect, startHarness, type Harness } from "../support/grpc.js";
import { scrape } from "../support/metrics.js";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-model.js";

describe("named upstreams", () => {
  let harness: Harness;
  let deepseek: FakeUpstream;
  let local: FakeUpstream;
  beforeAll(async () => {
    deepseek = await startFakeUpstream({ reply: () => ({ tokens: ["from deepseek"] }) });
    local = await startFakeUpstream({ reply: () => ({ tokens: ["from local"] }) });
    harness = await startHarness({
      env: {
        UPSTREAM_DEEPSEEK_BASE_URL: deepseek.baseURL,
        UPSTREAM_DEEPSEEK_API_KEY: "sk-deepseek-key",
        UPSTREAM_DEEPSEEK_MODELS: "deepseek-chat,deepseek-reasoner",
        UPSTREAM_LOCAL_BASE_URL: local.baseURL,
        UPSTREAM_LOCAL_MODELS: "llama*,llama3.2-special",
        METRICS_HOST: "127.0.0.1",
        METRICS_PORT: "0",
      },
      upstream: { reply: () => ({ tokens: ["from default"] }) },
    });
  });
  afterAll(async () => {
    await harness?.close();
    await deepseek?.close();
    await local?.close();
  });

  it.each([
    ["deepseek-chat", "from deepseek", "deepseek"],
    ["deepseek-reasoner", "from deepseek", "deepseek"],
    ["llama3.1", "from local", "local"],
    ["gpt-4o", "from default", "default"],
    ["", "from default", "default"],
  ])("sends model %j to the right upstream", async (model, text, upstream) => {
    const result = await collect(harness.client, { text: "hi", model });
    expect(result.code).toBe(status.OK);
    expect(result.text).toBe(text);
    const line = harness.logs.filter((l) => l.msg === "stream ended").at(-1);
    expect(line).toMatchObject({ upstream, model: model || "fake-model" });
  });

  it("uses each upstream's own key, and none where none is configured", () => {
    expect(deepseek.requests[0]?.headers.authorization).toBe("Bearer sk-deepseek-key");
    expect(deepseek.requests[0]?.body.model).toBe("deepseek-chat");
    expect(local.requests[0]?.headers.authorization).toBe("Bearer no-key");
    expect(harness.upstream.requests[0]?.headers.authorization).toBe("Bearer sk-test-harness-key");
  });

  it("sends no organization or project from the SDK's own environment variables", async () => {
    process.env.OPENAI_ORG_ID = "org-from-the-environment";
    process.env.OPENAI_PROJECT_ID = "proj-from-the-environment";
    try {
      const other = await startHarness({ upstream: { reply: () => ({ tokens: ["ok"] }) } });
      try {
        expect((await collect(other.client, { text: "hi" })).code).toBe(status.OK);
        const headers = other.upstream.requests[0]?.headers ?? {};
        expect(headers["openai-organization"]).toBeUndefined();
        expect(headers["openai-project"]).toBeUndefined();
      } finally {
        await other.close();
      }
    } finally {
      delete process.env.OPENAI_ORG_ID;
      delete process.env.OPENAI_PROJECT_ID;
    }
  });

  it("labels metrics with the upstream", async () => {
    const s = await scrape(harness.gateway.metricsPort ?? 0);
    expect(
      s.value("gen_ai_server_request_duration_seconds_count", {
        upstream: "deepseek",
        gen_ai_request_model: "deepseek-chat",
      }),
    ).toBe(1);
    expect(s.value("gen_ai_server_request_duration_seconds_count", { upstream: "local" })).toBe(1);
    expect(s.value("gen_ai_server_request_duration_seconds_count", { upstream: "default" })).toBe(2);
  });
});
