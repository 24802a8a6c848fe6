import { defineConfig } from "vitest/config";

// Two groups (`npm test` runs both): test/unit/ runs in this process (the gRPC server on port 0 and
// the fake model in-process), in seconds: `npm run test:unit`; test/e2e/ starts real processes
// (the built service, Envoy, Redis, nginx, Chromium, grpcurl, the CLI): `npm run test:e2e`.
export default defineConfig({
  test: {
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // The end-to-end files start Envoy and service processes; two cores run two files at a time,
    // whichever group they belong to.
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: "unit", include: ["test/unit/**/*.test.ts"] } },
      { extends: true, test: { name: "e2e", include: ["test/e2e/**/*.test.ts"] } },
    ],
  },
});
