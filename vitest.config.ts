import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // The end-to-end files start Envoy and service processes; two cores run two files at a time.
    maxWorkers: 2,
  },
});
