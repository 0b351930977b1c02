/**
 * A redis-server of a test's own that can be stopped and started again on the same port (an
 * outage), with the settings the test asks for. Never the shared Redis on 6379.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './net.js';

export interface OwnRedis {
  port: number;
  url: string;
  dir: string;
  start(): Promise<void>;
  /** SIGTERM by default; SIGKILL for a crash. Resolves once the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Stop and remove its directory. */
  destroy(): Promise<void>;
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.end();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

export async function ownRedis(args: string[] = ['--save', '', '--appendonly', 'no'], opts: { port?: number } = {}): Promise<OwnRedis> {
  const port = opts.port ?? (await freePort());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-own-redis-'));
  let child: ChildProcess | undefined;
  let output = '';
  const r: OwnRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    async start() {
      output = '';
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--loglevel', 'warning', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (d) => (output += d));
      child.stderr!.on('data', (d) => (output += d));
      const deadline = Date.now() + 10_000;
      while (!(await answers(port))) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server on ${port} did not start: ${output.trim()}`);
        await new Promise((res) => setTimeout(res, 50));
      }
    },
    async stop(signal = 'SIGTERM') {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      await new Promise((res) => {
        c.once('exit', res);
        c.kill(signal);
      });
    },
    async destroy() {
      await r.stop('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await r.start();
  return r;
}
