// `npm start` as a user runs it: the whole stack from one command with no configuration (service,
// Envoy, demo upstream), then Ctrl-C stops all of it.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { expect, it } from "vitest";
import { ROOT } from "../src/dev/envoy.js";
import { allEvents, post } from "./support/http.js";

it("starts service, Envoy and the demo upstream with no configuration, and stops on SIGINT", { timeout: 60_000 }, async () => {
  const child = spawn(process.execPath, [join(ROOT, "dist", "stack.js")], {
    // Free ports instead of the defaults, so this runs beside a developer's own `npm start`.
    env: { PATH: process.env.PATH ?? "", GRPC_PORT: "0", HTTP_PORT: "0", ENVOY_ADMIN_PORT: "0", METRICS_PORT: "0", LOG_FORMAT: "json" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  try {
    const up = await new Promise<Record<string, string>>((resolve, reject) => {
      createInterface({ input: child.stdout }).on("line", (line) => {
        if (line.includes('"msg":"stack up')) resolve(JSON.parse(line) as Record<string, string>);
      });
      void exited.then((code) => reject(new Error(`npm start's process exited (${code}) before the stack was up`)));
    });
    expect(up.auth).toMatch(/^open/);
    expect(up.upstream).toMatch(/^built-in demo/);

    const port = Number(new URL(up.http!).port);
    const response = await post(port, "/chat", JSON.stringify({ text: "hello" }));
    expect(response.status).toBe(200);
    const events = await allEvents(response);
    const text = events.map((e) => e.delta?.text ?? "").join("");
    expect(text).toContain('You said: "hello"');
    expect(events.at(-1)?.finish?.finishReason).toBe("stop");

    child.kill("SIGINT");
    expect(await exited).toBe(0);
    // Envoy went with it: its admin port no longer answers.
    await expect(fetch(`${up.envoyAdmin}/ready`)).rejects.toThrow();
  } finally {
    child.kill("SIGKILL");
  }
});
