// Bytes the kernel holds in the socket queues of loopback TCP connections, from /proc/net/tcp{,6}
// (Linux). The backpressure test and bench use it to tell what sits in kernel buffers between two
// processes from what a process took in: a reader that stops leaves both send and receive queues
// full, and those are part of what an upstream can write before it blocks.
import { readFileSync } from "node:fs";

export interface TcpQueues {
  /** Established connections with an end on the port. */
  connections: number;
  /** Bytes queued on the port's side: not yet acknowledged by the peer (send), not yet read (receive). */
  serverSend: number;
  serverReceive: number;
  /** The same on the other ends of those connections. */
  peerSend: number;
  peerReceive: number;
}

const ESTABLISHED = "01";

/** Sums the kernel's queues over every established connection to or from `port` on this host. */
export function tcpQueues(port: number, filter: (peerPort: number) => boolean = () => true): TcpQueues {
  const out: TcpQueues = { connections: 0, serverSend: 0, serverReceive: 0, peerSend: 0, peerReceive: 0 };
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 5 || fields[3] !== ESTABLISHED) continue;
      const local = portOf(fields[1]!);
      const remote = portOf(fields[2]!);
      const [send, receive] = fields[4]!.split(":").map((hex) => parseInt(hex, 16)) as [number, number];
      if (local === port && filter(remote)) {
        out.connections++;
        out.serverSend += send;
        out.serverReceive += receive;
      } else if (remote === port && filter(local)) {
        out.peerSend += send;
        out.peerReceive += receive;
      }
    }
  }
  return out;
}

function portOf(address: string): number {
  return parseInt(address.slice(address.lastIndexOf(":") + 1), 16);
}
