// A free loopback port, for the processes `npm run start:cluster`, the tests and the bench start
// themselves (those that cannot listen on port 0 and say which port they got).
import { once } from "node:events";
import { createServer } from "node:net";

export async function freePort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  server.close();
  await once(server, "close");
  return port;
}
