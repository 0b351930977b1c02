/**
 * Start time and idle RSS of `web` and `worker` from dist (what the Procfile and the image run):
 * from spawn to /readyz answering 200 on HEALTH_PORT, then RSS after 3 s idle. Runs against a
 * private redis-server with AOF (never the shared one). `npm run bench -- startup`.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort } from '../test/support/net.js';
import { startPrivateRedis } from '../test/support/redis-server.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const RUNS = 3;

async function until(ok: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function main(): Promise<void> {
  const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`npm run build failed: ${build.stdout}${build.stderr}`);
  // AOF as in production (Ferry refuses a Redis that persists nothing).
  const redis = await startPrivateRedis(['--appendonly', 'yes', '--save', '']);
  try {
    for (const mode of ['worker', 'web'] as const) {
      const starts: number[] = [];
      const rss: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const healthPort = await freePort();
        const env = {
          PATH: process.env.PATH,
          REDIS_URL: redis.url,
          HEALTH_PORT: String(healthPort),
          FERRY_PREFIX: `bench-startup-${process.pid}`,
          LOG_LEVEL: 'warn',
          ...(mode === 'web' ? { PORT: String(await freePort()), SLACK_BOT_TOKEN: 'xoxb-bench', SLACK_SIGNING_SECRET: 'bench', SLACK_API_URL: 'http://127.0.0.1:9/api/' } : {}),
        };
        const t0 = performance.now();
        const child = spawn(process.execPath, ['dist/main.js', mode], { cwd: ROOT, env, stdio: 'ignore' });
        await until(async () => (await fetch(`http://127.0.0.1:${healthPort}/readyz`).then((r) => r.status, () => 0)) === 200, 60_000);
        starts.push(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 3000));
        rss.push(rssMiB(child.pid!));
        await new Promise((r) => {
          child.once('exit', r);
          child.kill('SIGTERM');
        });
      }
      console.log(`${mode.padEnd(6)} from dist: ready in ${(median(starts) / 1000).toFixed(2)} s (median of ${RUNS}; min ${(Math.min(...starts) / 1000).toFixed(2)} s), idle RSS ${median(rss).toFixed(0)} MiB (median; max ${Math.max(...rss).toFixed(0)} MiB)`);
    }
  } finally {
    await redis.close();
  }
}
