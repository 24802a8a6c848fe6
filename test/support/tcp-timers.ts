// The kernel's timers of TCP sockets, from its own table (/proc/net/tcp, Linux): whether a socket
// probes its peer with TCP keepalive while the connection is silent.
import { readFileSync } from "node:fs";

const ESTABLISHED = "01";
/** /proc/net/tcp's timer kinds: 2 is the socket timer, which is keepalive's on an established socket. */
export const KEEPALIVE_TIMER = 2;
/** /proc/net/tcp gives a timer's time left in clock ticks (USER_HZ), 100 a second. */
const TICKS_PER_SECOND = 100;

/** The timer of each established socket whose remote port is `port`: the clients' ends. */
export function clientTimers(port: number): { kind: number; secondsLeft: number }[] {
  return readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f[3] === ESTABLISHED && parseInt(f[2]!.split(":")[1]!, 16) === port)
    .map((f) => {
      const [kind, left] = f[5]!.split(":").map((hex) => parseInt(hex, 16)) as [number, number];
      return { kind, secondsLeft: left / TICKS_PER_SECOND };
    });
}
