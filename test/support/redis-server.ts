/**
 * A private redis-server for tests and benchmarks, never the shared Redis on 6379: the run's
 * (global-redis.ts), or a test's own when it stops, crashes, restarts or reconfigures Redis.
 * It can be stopped (SIGTERM, or SIGKILL for a crash) and started again on the same port and
 * data directory, keeping its data (with AOF) or dropping it (`start({ fresh: true })`).
 * Fails with a clear message if redis-server is missing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { listening, restartablePort } from './net.js';
import { timeBound } from './speed.js';

export interface PrivateRedis {
  url: string;
  port: number;
  /** Its data directory (AOF, a sentinel's config beside it). */
  dir: string;
  /** Start it again on the same port; `fresh` drops its data first (a Redis that lost it). */
  start(opts?: { fresh?: boolean }): Promise<void>;
  /** SIGTERM by default (the AOF is complete); SIGKILL for a crash. Resolves once it is gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Stop it and remove its directory. */
  close(): Promise<void>;
}

/** No persistence: the run's Redis and most tests'. */
export const VOLATILE = ['--save', '', '--appendonly', 'no'];
/** Every write on disk before it is answered: a restart loses nothing. */
export const DURABLE = ['--save', '', '--appendonly', 'yes', '--appendfsync', 'always'];

/** `args` are redis-server settings (`VOLATILE` unless given; given ones replace it). */
export async function startPrivateRedis(args: string[] = VOLATILE): Promise<PrivateRedis> {
  if (spawnSync('sh', ['-c', 'command -v redis-server']).status !== 0) {
    throw new Error('The test suite needs redis-server on PATH (Debian: apt-get install redis-server); it starts its own private instance and never uses the shared one.');
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-redis-'));
  // Restarted on the same port by outage tests: never one an outgoing connection can take.
  const port = await restartablePort();
  let child: ChildProcess | undefined;
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise((r) => {
      c.once('exit', r);
      c.kill(signal);
    });
  };
  const start = async (opts: { fresh?: boolean } = {}) => {
    if (opts.fresh) {
      for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
    }
    let output = '';
    const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--loglevel', 'warning', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout!.on('data', (d) => (output += d));
    c.stderr!.on('data', (d) => (output += d));
    child = c;
    const limit = timeBound(10_000);
    const deadline = Date.now() + limit.ms;
    while (!(await listening(port))) {
      if (c.exitCode !== null || Date.now() > deadline) {
        await stop('SIGKILL');
        throw new Error(`private redis-server did not start on ${port} within ${limit.ms} ms (${limit.why}): ${output.trim()}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    // Something else answering on the port is not this server.
    if (c.exitCode !== null || /already in use/i.test(output)) {
      await stop('SIGKILL');
      throw new Error(`private redis-server could not take ${port}: ${output.trim()}`);
    }
  };
  try {
    await start();
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    start,
    stop,
    async close() {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
