// A TCP proxy in front of a port, for the tests of resumable streams: `drop()` cuts every connection
// through it at once (both sides reset, as a lost network does), `refuse()` makes it reset each
// new connection as it comes (the gateway unreachable), `accept()` lets them through again.
import { createConnection, createServer, type Socket } from "node:net";

export interface DropProxy {
  readonly port: number;
  /** Connections made through it so far. */
  readonly connections: number;
  drop(): void;
  refuse(): void;
  accept(): void;
  close(): Promise<void>;
}

export async function startDropProxy(target: number): Promise<DropProxy> {
  const sockets = new Set<Socket>();
  let refusing = false;
  let connections = 0;
  const server = createServer((client) => {
    client.on("error", () => undefined);
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    connections++;
    const upstream = createConnection({ host: "127.0.0.1", port: target });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const drop = () => {
    for (const s of sockets) s.resetAndDestroy();
  };
  return {
    port: typeof address === "object" && address ? address.port : 0,
    get connections() {
      return connections;
    },
    drop,
    refuse: () => {
      refusing = true;
    },
    accept: () => {
      refusing = false;
    },
    close: async () => {
      drop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
