// The benchmark is not a test: nothing here is timed against a target. This runs `npm run bench`'s
// smallest mode (--smoke: the Node paths, direct, gRPC and HTTP through Envoy; the Python reference
// needs bench/setup.sh's virtualenv and is left to `npm run bench`) so the harness cannot rot, and
// checks what every run must show: every reply complete, no token lost or duplicated.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import type { BenchResult } from "../bench/run.js";

const ROOT = join(import.meta.dirname, "..");
const out = mkdtempSync(join(tmpdir(), "chat-bench-smoke-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("npm run bench -- --smoke", () => {
  it("runs every Node path end to end and loses nothing", { timeout: 180_000 }, async () => {
    await promisify(execFile)(process.execPath, ["--import", "tsx", "bench/run.ts", "--smoke", "--out", out], {
      cwd: ROOT,
      timeout: 170_000,
    });
    const result = JSON.parse(readFileSync(join(out, "smoke-latest.json"), "utf8")) as BenchResult;
    expect(result.paths).toEqual(["direct", "grpc", "http"]);
    for (const path of result.paths) {
      const integrity = [result.ttft[path]!.integrity, result.single[path]!.integrity, ...result.load[path]!.map((l) => l.integrity)];
      if (path !== "direct") integrity.push(...result.rss[path]!.map((r) => r.integrity));
      for (const i of integrity) {
        expect(i.replies).toBeGreaterThan(0);
        expect({ path, lost: i.lost, duplicated: i.duplicated, corrupt: i.corrupt, errors: i.errors }).toEqual({ path, lost: 0, duplicated: 0, corrupt: 0, errors: 0 });
      }
      expect(result.single[path]!.tokensPerSecond).toBeGreaterThan(0);
      expect(result.load[path]!.map((l) => l.concurrency)).toEqual([1, 10]);
    }
    expect(result.rss.grpc![0]!.open).toBe(result.rss.grpc![0]!.streams);
    expect(readFileSync(join(out, "smoke-latest.md"), "utf8")).toContain("| gRPC (grpc-js → service) |");
    expect(existsSync(join(out, "smoke-throughput.svg"))).toBe(true);
  });
});
