/** Loopback ports for tests and benchmarks. */
import fs from 'node:fs';
import net from 'node:net';

/** A free TCP port on loopback (the kernel picks it; closed again before returning). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** Whether something accepts a TCP connection on 127.0.0.1:port now. */
export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.end();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** Local ports the kernel gives outgoing connections (Linux's ip_local_port_range). */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo && hi) return [lo, hi];
  } catch {
    // Not Linux: its usual default.
  }
  return [32768, 60999];
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * A free loopback port below the ephemeral range, for a server a test stops and starts again on
 * the same port. While it is down, a port inside the range can be taken as the local port of any
 * outgoing connection, even of a client reconnecting to that very port, which then connects to
 * itself (TCP self-connect) and talks to nobody, while the restarted server cannot bind: a
 * Redis "restarted" that way left a drain's worker deaf in loaded runs.
 */
export async function restartablePort(): Promise<number> {
  const [lo] = ephemeralRange();
  const min = 10_000;
  const max = lo - 1;
  for (let i = 0; max > min && i < 100; i++) {
    const port = min + Math.floor(Math.random() * (max - min));
    if (await canBind(port)) return port;
  }
  return freePort();
}
