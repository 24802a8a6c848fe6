// The benchmark is not a test: nothing here is timed against a target. This runs `npm run bench`'s
// smallest mode (--smoke: the Node paths, the raw reader, direct, gRPC, gRPC on stored conversations
// and HTTP through Envoy; the Python reference needs bench/setup.sh's virtualenv and is left to `npm
// run bench`) so the harness cannot rot, and
// checks what every run must show: as many replies as the plan asks for, each complete (every token
// in order, then the finish event), none lost, duplicated, corrupt or failed; under load, only the
// streams open at the window's end cut short. Figures are not checked: they are the bench's to report.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import type { BenchResult } from "../../bench/run.js";
import { PLANS } from "../../bench/plans.js";
import type { Integrity } from "../../bench/measure.js";

const ROOT = join(import.meta.dirname, "..", "..");
const out = mkdtempSync(join(tmpdir(), "chat-bench-smoke-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("npm run bench -- --smoke", () => {
  it("runs every Node path end to end and loses nothing", { timeout: 180_000 }, async () => {
    await promisify(execFile)(process.execPath, ["--import", "tsx", "bench/run.ts", "--smoke", "--out", out], {
      cwd: ROOT,
      timeout: 170_000,
    });
    const result = JSON.parse(readFileSync(join(out, "smoke-latest.json"), "utf8")) as BenchResult;
    expect(result.paths).toEqual(["raw", "direct", "grpc", "grpc-conversation", "http"]);
    const plan = PLANS.smoke;
    const clean = { lost: 0, duplicated: 0, corrupt: 0, errors: 0 };
    const counts = ({ replies, complete, tokens, lost, duplicated, corrupt, errors }: Integrity) => ({
      replies,
      complete,
      tokens,
      lost,
      duplicated,
      corrupt,
      errors,
    });
    for (const path of result.paths) {
      // Sequential replies: exactly the planned number, each one whole.
      const ttft = result.ttft[path]!;
      expect({ path, ...counts(ttft.integrity) }).toEqual({
        path,
        replies: plan.ttftSamples,
        complete: plan.ttftSamples,
        tokens: plan.ttftSamples * result.shapes.ttft.tokens,
        ...clean,
      });
      expect(ttft.samples).toBe(plan.ttftSamples);
      const single = result.single[path]!;
      expect({ path, ...counts(single.integrity) }).toEqual({
        path,
        replies: plan.single.runs,
        complete: plan.single.runs,
        tokens: plan.single.runs * plan.single.shape.tokens,
        ...clean,
      });
      // Under load replies finish (at least one: on a busy machine a worker's first may outlast the
      // short window), and only the ones open at the window's end, one per worker at most, are cut.
      expect(result.load[path]!.map((l) => l.concurrency)).toEqual(plan.load.levels);
      for (const load of result.load[path]!) {
        const i = load.integrity;
        expect({ path, concurrency: load.concurrency, ...clean }).toEqual({
          path,
          concurrency: load.concurrency,
          lost: i.lost,
          duplicated: i.duplicated,
          corrupt: i.corrupt,
          errors: i.errors,
        });
        expect(i.complete, `${path} @${load.concurrency}: complete replies`).toBeGreaterThanOrEqual(1);
        expect(i.replies - i.complete, `${path} @${load.concurrency}: replies cut short`).toBeLessThanOrEqual(
          load.concurrency,
        );
      }
      // Paced streams: the same, and a gap between deltas measured.
      const paced = result.paced![path]!;
      expect({ path, ...clean }).toEqual({
        path,
        lost: paced.integrity.lost,
        duplicated: paced.integrity.duplicated,
        corrupt: paced.integrity.corrupt,
        errors: paced.integrity.errors,
      });
      expect(paced.integrity.complete, `${path} paced: complete replies`).toBeGreaterThanOrEqual(1);
      expect(paced.gapP99Ms, `${path} paced: gap p99`).toBeGreaterThan(0);
      if (path === "direct" || path === "raw") continue;
      // Every slow stream open at once when RSS was read, then read to its end.
      for (const rss of result.rss[path]!) {
        const tokens = result.shapes.rss[rss.streams]!.tokens;
        expect({ path, open: rss.open, ...counts(rss.integrity) }).toEqual({
          path,
          open: rss.streams,
          replies: rss.streams,
          complete: rss.streams,
          tokens: rss.streams * tokens,
          ...clean,
        });
      }
    }
    // The leak curve: every cycle's replies whole, an idle RSS read after each cycle.
    const leak = result.leak!;
    expect(leak.afterCycleKiB).toHaveLength(plan.leak.cycles);
    expect(counts(leak.integrity)).toEqual({
      replies: plan.leak.cycles * plan.leak.streams,
      complete: plan.leak.cycles * plan.leak.streams,
      tokens: plan.leak.cycles * plan.leak.streams * plan.leak.shape.tokens,
      ...clean,
    });
    // Issue 24's targets, judged in the run and written with it: all five numbered, each with its
    // figure; the paced CPU is a ratio to the fake model's own, measured in the same window.
    expect(new Set(result.targets!.map((t) => t.target))).toEqual(new Set([1, 2, 3, 4, 5]));
    for (const path of ["grpc", "http"] as const) {
      expect(result.paced![path]!.modelCpuMsPer1kTokens, `${path}: the model's CPU`).toBeGreaterThan(0);
      const cpu = result.targets!.find((t) => t.target === 1 && t.name.includes(path === "grpc" ? "gRPC" : "Envoy"));
      expect(cpu?.figure).toMatch(/^\d+\.\d\d× \(service /);
    }
    const md = readFileSync(join(out, "smoke-latest.md"), "utf8");
    expect(md).toContain("| gRPC (grpc-js → service) |");
    for (const t of result.targets!) expect(md).toContain(`${t.name} — ${t.figure}`);
    expect(existsSync(join(out, "smoke-throughput.svg"))).toBe(true);
  });
});
