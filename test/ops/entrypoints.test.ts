/**
 * The deployable entry points, outside a container: `npm run build`, then the Procfile's `web`
 * and `worker` commands (node dist/main.js …) and bin/ferry.mjs as real processes. Health and
 * metrics answer on HEALTH_PORT only; readiness follows a real Redis that is stopped and
 * restarted; SIGTERM ends each process with exit 0; a bug no handler catches ends it non-zero;
 * a bad variable is named in one sentence.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/net.js';
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';
import { bound, timeBound } from '../support/speed.js';
import { within } from '../support/wait.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BOUND_MS = 800;

/** The Procfile's command for a process type, as argv. */
function procfile(kind: string): string[] {
  const line = fs.readFileSync(path.join(ROOT, 'Procfile'), 'utf8').split('\n').find((l) => l.startsWith(`${kind}:`));
  if (!line) throw new Error(`Procfile has no ${kind}`);
  return line.slice(kind.length + 1).trim().split(/\s+/);
}

interface Proc {
  child: ChildProcess;
  out(): string;
  exit: Promise<number | null>;
}

function run(argv: string[], env: NodeJS.ProcessEnv): Proc {
  const [cmd, ...args] = argv;
  const child = spawn(cmd === 'node' ? process.execPath : cmd!, args, { cwd: ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, out: () => out, exit };
}

async function get(port: number, p: string): Promise<{ status: number; ms: number; body: string }> {
  const t0 = performance.now();
  try {
    // Bounded: a port another process took in the meantime may accept and never answer, and
    // undici's own header timeout (300 s) would outlast the test instead of reporting the child.
    const res = await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(bound(10_000)) });
    return { status: res.status, ms: performance.now() - t0, body: await res.text() };
  } catch {
    return { status: 0, ms: performance.now() - t0, body: '' };
  }
}

/** The process's exit code, within a bound; past it, fail with what the process printed (not a silent backstop). */
const exitOf = (p: Proc, what: string): Promise<number | null> => within(p.exit, `${what} did not exit`, 30_000, () => `it printed:\n${p.out()}`);

async function until<T>(probe: () => Promise<T | undefined>, what: string, proc?: Proc, idleMs = 45_000): Promise<T> {
  const limit = timeBound(idleMs);
  const deadline = Date.now() + limit.ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline || (proc && proc.child.exitCode !== null)) {
      const why = proc && proc.child.exitCode !== null ? `the process exited (${proc.child.exitCode})` : `not within ${limit.ms} ms (${limit.why})`;
      throw new Error(`timed out waiting for ${what}: ${why}${proc ? `:\n${proc.out()}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
}

describe('entry points from dist (Procfile, bin/ferry.mjs)', () => {
  let redis: PrivateRedis;
  const procs: Proc[] = [];

  beforeAll(async () => {
    const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`npm run build failed:\n${build.stdout}${build.stderr}`);
    redis = await startPrivateRedis(['--appendonly', 'yes', '--save', '']);
  }, bound(240_000));

  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await redis?.close();
  });

  it('worker (Procfile): ready with Redis and workers, 503 within the bound while Redis is down, ready again, exit 0 on SIGTERM', async () => {
    const healthPort = await freePort();
    const w = run(procfile('worker'), { REDIS_URL: redis.url, HEALTH_PORT: String(healthPort), HEALTH_TIMEOUT_MS: String(BOUND_MS), FERRY_PREFIX: `ep-${process.pid}-w` });
    procs.push(w);
    expect(procfile('worker')).toEqual(['node', '--optimize-for-size', '--max-semi-space-size=1', 'dist/main.js', 'worker']);
    const ready = await until(async () => {
      const r = await get(healthPort, '/readyz');
      return r.status === 200 ? r : undefined;
    }, 'worker readiness', w);
    expect(JSON.parse(ready.body)).toMatchObject({ status: 'ready', checks: { redis: { ok: true }, workers: { ok: true } } });
    expect((await get(healthPort, '/livez')).status).toBe(200);
    const metrics = await get(healthPort, '/metrics');
    expect(metrics.body).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(metrics.body).toMatch(/^ferry_queue_jobs\{queue="ops",state="waiting"\} \d+$/m);

    await redis.stop('SIGKILL');
    const down = await until(async () => {
      const r = await get(healthPort, '/readyz');
      return r.status === 503 ? r : undefined;
    }, 'worker not ready', w, 10_000);
    expect(down.ms).toBeLessThan(BOUND_MS + bound(2000));
    expect(JSON.parse(down.body).checks.redis.ok).toBe(false);
    // Still live: a Redis outage is not a reason to restart the process.
    expect((await get(healthPort, '/livez')).status).toBe(200);
    await redis.start();
    await until(async () => ((await get(healthPort, '/readyz')).status === 200 ? true : undefined), 'worker ready again', w);

    const t0 = Date.now();
    w.child.kill('SIGTERM');
    expect(await exitOf(w, 'the worker')).toBe(0);
    expect(Date.now() - t0).toBeLessThan(bound(25_000));
  });

  it('web (Procfile, HTTP mode): nothing but /slack/events on PORT; health on HEALTH_PORT; exit 0 on SIGTERM', async () => {
    const [port, healthPort] = [await freePort(), await freePort()];
    const web = run(procfile('web'), {
      REDIS_URL: redis.url,
      PORT: String(port),
      HEALTH_PORT: String(healthPort),
      SLACK_BOT_TOKEN: 'xoxb-entrypoint-test',
      SLACK_SIGNING_SECRET: 'entrypoint-secret',
      SLACK_API_URL: 'http://127.0.0.1:9/api/',
      FERRY_PREFIX: `ep-${process.pid}-web`,
    });
    procs.push(web);
    const ready = await until(async () => {
      const r = await get(healthPort, '/readyz');
      return r.status === 200 ? r : undefined;
    }, 'web readiness', web);
    expect(Object.keys(JSON.parse(ready.body).checks)).toEqual(['redis']);
    await until(async () => ((await get(port, '/slack/events')).status !== 0 ? true : undefined), 'Slack port', web);
    for (const p of ['/healthz', '/readyz', '/metrics']) expect((await get(port, p)).status).toBe(404);
    web.child.kill('SIGTERM');
    expect(await exitOf(web, 'the web process')).toBe(0);
  });

  it('bin/ferry.mjs runs Ferry in its own process, so SIGTERM reaches the shutdown (exit 0, no child left)', async () => {
    const healthPort = await freePort();
    const w = run(['node', 'bin/ferry.mjs', 'worker'], { REDIS_URL: redis.url, HEALTH_PORT: String(healthPort), FERRY_PREFIX: `ep-${process.pid}-bin` });
    procs.push(w);
    await until(async () => ((await get(healthPort, '/readyz')).status === 200 ? true : undefined), 'bin worker readiness', w);
    w.child.kill('SIGTERM');
    expect(await exitOf(w, 'the worker')).toBe(0);
    expect(w.out()).toMatch(/shutting down/);
    // The health port is closed: nothing of Ferry is left running.
    expect((await get(healthPort, '/livez')).status).toBe(0);
  });

  it('refuses a Redis that would lose its data, naming the setting; the override starts anyway', async () => {
    const volatile = await startPrivateRedis(['--appendonly', 'no', '--save', '']);
    const evicting = await startPrivateRedis(['--appendonly', 'yes', '--maxmemory-policy', 'allkeys-lru']);
    try {
      const a = run(procfile('worker'), { REDIS_URL: volatile.url });
      procs.push(a);
      expect(await exitOf(a, 'the worker on a Redis that persists nothing')).toBe(1);
      expect(a.out().trim()).toBe(
        'Redis persists nothing (appendonly no and save ""), so a restart loses every drain ledger, approval and audit entry: set appendonly yes (or a save schedule). (FERRY_ALLOW_UNSAFE_REDIS=1 starts Ferry anyway.)',
      );
      const b = run(procfile('worker'), { REDIS_URL: evicting.url });
      procs.push(b);
      expect(await exitOf(b, 'the worker on an evicting Redis')).toBe(1);
      expect(b.out()).toMatch(/^Redis maxmemory-policy is allkeys-lru, which evicts keys .*: set maxmemory-policy noeviction\./);
      const healthPort = await freePort();
      const c = run(procfile('worker'), { REDIS_URL: volatile.url, FERRY_ALLOW_UNSAFE_REDIS: '1', HEALTH_PORT: String(healthPort), FERRY_PREFIX: `ep-${process.pid}-unsafe` });
      procs.push(c);
      await until(async () => ((await get(healthPort, '/readyz')).status === 200 ? true : undefined), 'worker on an unsafe Redis with the override', c);
      expect(c.out()).toMatch(/Redis persists nothing/);
      c.child.kill('SIGTERM');
      expect(await exitOf(c, 'the worker with the override, after SIGTERM')).toBe(0);
    } finally {
      await volatile.close();
      await evicting.close();
    }
  });

  it('a bug that escapes every handler (an uncaught exception, an unhandled rejection) is logged and ends the process non-zero', async () => {
    const [node, ...args] = procfile('worker');
    const withFault = [node!, '--import', path.join(ROOT, 'test/support/fault-on-signal.ts'), ...args];
    for (const [fault, line] of [
      ['throw', 'uncaught exception; exiting'],
      ['reject', 'unhandled promise rejection; exiting'],
    ] as const) {
      const healthPort = await freePort();
      const p = run(withFault, { REDIS_URL: redis.url, HEALTH_PORT: String(healthPort), FERRY_PREFIX: `ep-${process.pid}-${fault}`, FERRY_TEST_FAULT: fault });
      procs.push(p);
      // Running (its handlers are in place) before the fault.
      await until(async () => ((await get(healthPort, '/readyz')).status === 200 ? true : undefined), `worker ready before the ${fault}`, p);
      p.child.kill('SIGUSR2');
      // 70 (EX_SOFTWARE): not 0, which a supervisor takes for a clean stop, nor Node's own 1.
      expect(await exitOf(p, `the worker after the ${fault}`), p.out()).toBe(70);
      expect(p.out()).toContain(line);
      expect(p.out()).toMatch(/a (bug no handler catches|rejection nobody handles)/);
    }
  });

  it('a bad variable stops start-up with one sentence naming it', async () => {
    for (const [name, value, sentence] of [
      ['HEALTH_PORT', 'abc', 'HEALTH_PORT must be a TCP port number (0–65535), not "abc".'],
      ['PORT', '70000', 'PORT must be a TCP port number (1–65535), not "70000".'],
      ['REDIS_URL', 'http://x', 'REDIS_URL must be redis://[user:password@]host:port[/db], rediss://… (TLS) or unix:///path, not "http://x".'],
    ] as const) {
      const p = run(procfile('worker'), { REDIS_URL: redis.url, [name]: value });
      procs.push(p);
      expect(await exitOf(p, 'the process')).toBe(1);
      expect(p.out().trim()).toBe(sentence);
    }
  });
});
