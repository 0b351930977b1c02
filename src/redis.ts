/**
 * Redis connections. REDIS_URL, else 127.0.0.1:6379 if something answers there, else (npm start
 * only) a private redis-server launched from PATH.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export function connect(url: string, opts: RedisOptions = {}): Redis {
  // BullMQ workers need maxRetriesPerRequest null; commands elsewhere are fine with it too.
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, lazyConnect: false, ...opts });
}

function answers(port: number, host: string, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Resolve the Redis URL to use, launching a private server when allowed and needed. */
export async function resolveRedisUrl(env: NodeJS.ProcessEnv, opts: { launch: boolean; probePort?: number }): Promise<{ url: string; launched?: () => Promise<void> }> {
  if (env.REDIS_URL) return { url: env.REDIS_URL };
  const port = opts.probePort ?? 6379;
  if (await answers(port, '127.0.0.1')) return { url: `redis://127.0.0.1:${port}` };
  if (!opts.launch) throw new Error(`No Redis: set REDIS_URL, or start redis-server on 127.0.0.1:${port}.`);
  if (spawnSync('sh', ['-c', 'command -v redis-server'], { env: { PATH: env.PATH ?? process.env.PATH } }).status !== 0) {
    throw new Error('Ferry needs Redis: set REDIS_URL, or install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) and run npm start again.');
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-redis-'));
  const sock = path.join(dir, 'redis.sock');
  // Its data outlives the process (AOF in a stable directory): a restart must not forget a drain's ledger.
  const dataDir = env.FERRY_REDIS_DIR ?? path.join(env.HOME ?? os.homedir(), '.local', 'state', 'ferry', 'redis');
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const child = spawn('redis-server', ['--port', '0', '--unixsocket', sock, '--unixsocketperm', '700', '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--dir', dataDir], {
    stdio: 'ignore',
  });
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(sock)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error('Could not start a private redis-server.');
    await new Promise((r) => setTimeout(r, 50));
  }
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  /** Stops it (SIGTERM: its AOF is complete); resolves once it has exited. */
  const stop = (): Promise<void> => {
    if (child.exitCode === null) child.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
    return exited;
  };
  process.once('exit', () => void stop());
  return { url: `redis+unix://${sock}`, launched: stop };
}

/** ioredis takes unix sockets as { path }; accept our redis+unix:// form too. */
export function redisOptionsFromUrl(url: string): { url?: string; path?: string } {
  if (url.startsWith('redis+unix://') || url.startsWith('unix://')) return { path: url.replace(/^(redis\+)?unix:\/\//, '') };
  return { url };
}

export function connectUrl(url: string, opts: RedisOptions = {}): Redis {
  const o = redisOptionsFromUrl(url);
  if (o.path) return new Redis({ path: o.path, maxRetriesPerRequest: null, ...opts });
  return connect(o.url!, opts);
}
