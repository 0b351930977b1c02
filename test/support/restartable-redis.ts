/**
 * A private redis-server a test can stop and start again on the same port, with its data kept
 * (AOF, fsync always) or lost (`start({ fresh: true })`): Redis away for a while, or back empty.
 * Never the shared Redis on 6379.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './net.js';

export interface RestartableRedis {
  url: string;
  port: number;
  /** Stop it (SIGTERM: the AOF is complete) and wait until the port is closed. */
  stop(): Promise<void>;
  /** Start it again on the same port; `fresh` drops its data first (a Redis that lost it). */
  start(opts?: { fresh?: boolean }): Promise<void>;
  close(): Promise<void>;
}

const answers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.end();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });

export async function startRestartableRedis(): Promise<RestartableRedis> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-redis-rs-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async (opts: { fresh?: boolean } = {}) => {
    if (opts.fresh) {
      for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
    }
    let output = '';
    const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir, '--loglevel', 'warning'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    c.stdout!.on('data', (d) => (output += d));
    c.stderr!.on('data', (d) => (output += d));
    child = c;
    const deadline = Date.now() + 10_000;
    while (!(await answers(port))) {
      if (c.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start on ${port}: ${output.trim()}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise((r) => {
      c.once('exit', r);
      c.kill('SIGTERM');
    });
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop,
    start,
    async close() {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
