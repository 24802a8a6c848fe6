// TLS on the gRPC listener: a throwaway self-signed certificate made with openssl, and real TLS
// handshakes from a grpc-js client that trusts it (and, for mutual TLS, presents its own).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { credentials, status, type ChannelCredentials } from "@grpc/grpc-js";
import { ChatServiceClient } from "../../src/gen/chat/v1/chat.js";
import { collect, startHarness, type Harness } from "../support/grpc.js";

const dir = mkdtempSync(join(tmpdir(), "chat-tls-"));

function selfSigned(name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ],
    { stdio: "ignore" },
  );
  return { cert, key };
}

const server = selfSigned("localhost");
const client = selfSigned("test-client");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function call(port: number, creds: ChannelCredentials) {
  const c = new ChatServiceClient(`127.0.0.1:${port}`, creds);
  try {
    return await collect(c, { text: "over tls" }, undefined, new Date(Date.now() + 5_000));
  } finally {
    c.close();
  }
}

describe("TLS", () => {
  let harness: Harness;
  beforeAll(async () => {
    harness = await startHarness({
      env: { TLS_CERT_FILE: server.cert, TLS_KEY_FILE: server.key },
      upstream: { reply: () => ({ tokens: ["secure", " reply"] }) },
    });
  });
  afterAll(() => harness?.close());

  it("streams to a client that trusts the certificate", async () => {
    const result = await call(harness.gateway.port, credentials.createSsl(readFileSync(server.cert)));
    expect(result.code).toBe(status.OK);
    expect(result.text).toBe("secure reply");
  });

  it("refuses a plaintext client and one that does not trust the certificate", async () => {
    expect((await call(harness.gateway.port, credentials.createInsecure())).code).toBe(status.UNAVAILABLE);
    expect((await call(harness.gateway.port, credentials.createSsl(readFileSync(client.cert)))).code).toBe(
      status.UNAVAILABLE,
    );
  });
});

describe("mutual TLS", () => {
  it("requires a client certificate signed by TLS_CLIENT_CA_FILE", async () => {
    const harness = await startHarness({
      env: { TLS_CERT_FILE: server.cert, TLS_KEY_FILE: server.key, TLS_CLIENT_CA_FILE: client.cert },
      upstream: { reply: () => ({ tokens: ["mutual"] }) },
    });
    try {
      const ca = readFileSync(server.cert);
      const withCert = await call(
        harness.gateway.port,
        credentials.createSsl(ca, readFileSync(client.key), readFileSync(client.cert)),
      );
      expect(withCert.text).toBe("mutual");
      expect((await call(harness.gateway.port, credentials.createSsl(ca))).code).toBe(status.UNAVAILABLE);
    } finally {
      await harness.close();
    }
  });
});
