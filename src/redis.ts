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
  const sentinel = sentinelUrl(env);
  if (sentinel) return { url: sentinel };
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

/**
 * Redis Sentinel: REDIS_SENTINELS=host:port,host:port (used instead of REDIS_URL when set),
 * REDIS_SENTINEL_MASTER (default ferry), REDIS_PASSWORD / REDIS_USERNAME for the data nodes,
 * REDIS_SENTINEL_PASSWORD for the sentinels, REDIS_TLS=1 for TLS to both. Carried as one
 * `redis-sentinel://` URL so every connection (runtime, duplicates, BullMQ) is built the same way.
 */
export function sentinelUrl(env: NodeJS.ProcessEnv): string | undefined {
  const list = env.REDIS_SENTINELS?.trim();
  if (!list) return undefined;
  const nodes = list.split(',').map((s) => s.trim());
  for (const n of nodes) {
    const m = /^([^:\s]+):(\d{1,5})$/.exec(n);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new Error(`REDIS_SENTINELS must be host:port[,host:port…], and "${n}" is not host:port.`);
  }
  const q = new URLSearchParams();
  for (const k of ['REDIS_PASSWORD', 'REDIS_USERNAME', 'REDIS_SENTINEL_PASSWORD', 'REDIS_TLS'] as const) if (env[k]) q.set(k, env[k]);
  return `redis-sentinel://${nodes.join(',')}/${encodeURIComponent(env.REDIS_SENTINEL_MASTER?.trim() || 'ferry')}${q.size ? `?${q}` : ''}`;
}

function sentinelOptions(url: string): RedisOptions {
  const m = /^redis-sentinel:\/\/([^/]+)\/([^?]*)(?:\?(.*))?$/.exec(url);
  if (!m) throw new Error(`not a redis-sentinel URL: ${url}`);
  const q = new URLSearchParams(m[3] ?? '');
  const tls = q.get('REDIS_TLS') === '1' ? {} : undefined;
  return {
    sentinels: m[1]!.split(',').map((hp) => ({ host: hp.slice(0, hp.lastIndexOf(':')), port: Number(hp.slice(hp.lastIndexOf(':') + 1)) })),
    name: decodeURIComponent(m[2]!),
    ...(q.get('REDIS_PASSWORD') ? { password: q.get('REDIS_PASSWORD')! } : {}),
    ...(q.get('REDIS_USERNAME') ? { username: q.get('REDIS_USERNAME')! } : {}),
    ...(q.get('REDIS_SENTINEL_PASSWORD') ? { sentinelPassword: q.get('REDIS_SENTINEL_PASSWORD')! } : {}),
    ...(tls ? { tls, sentinelTLS: tls, enableTLSForSentinelMode: true } : {}),
    // Ask the sentinels again as soon as one announces a new primary (narrows the window of writes to a demoted one).
    failoverDetector: true,
    // A primary demoted under us answers READONLY: reconnect (to the primary the sentinels name now) and resend.
    reconnectOnError: (err: Error) => (/^READONLY|^LOADING|^MASTERDOWN/.test(err.message) ? 2 : false),
  };
}

export function connectUrl(url: string, opts: RedisOptions = {}): Redis {
  if (url.startsWith('redis-sentinel://')) return new Redis({ maxRetriesPerRequest: null, enableReadyCheck: true, ...sentinelOptions(url), ...opts });
  const o = redisOptionsFromUrl(url);
  if (o.path) return new Redis({ path: o.path, maxRetriesPerRequest: null, ...opts });
  return connect(o.url!, opts);
}

/**
 * The same client connected again when it ends without being closed by its owner (a failover
 * landing while it reconnects can leave an ioredis 5 client closed for good). For connections
 * handed to BullMQ: its Queue, Worker and QueueEvents keep the client they were given (its
 * listeners and the Lua commands BullMQ defined on it), so it is revived in place rather than
 * replaced. BullMQ itself only reconnects its blocking connections.
 */
export function revivable(c: Redis, onRevive?: (reason: string) => void, delayMs = 500): Redis {
  let closing = false;
  const quit = c.quit.bind(c);
  const disconnect = c.disconnect.bind(c);
  c.quit = ((...a: Parameters<Redis['quit']>) => {
    closing = true;
    return quit(...a);
  }) as Redis['quit'];
  // disconnect(true) asks ioredis to reconnect: not a close.
  c.disconnect = (reconnect?: boolean) => {
    if (!reconnect) closing = true;
    disconnect(reconnect);
  };
  let last = 0;
  const connect = () => {
    if (!closing && c.status === 'end') c.connect().catch(() => undefined);
  };
  c.on('end', () => {
    if (closing) return;
    onRevive?.('the connection ended without being closed');
    // At once, so commands sent meanwhile wait in ioredis's offline queue instead of failing;
    // a client that keeps ending (its Redis gone) is tried again every delayMs, not in a loop.
    const again = Date.now() - last < 1000;
    last = Date.now();
    if (again) setTimeout(connect, delayMs).unref();
    else connect();
  });
  return c;
}

/**
 * A connection that is built again when it ends without being closed by its owner. ioredis 5
 * can leave a client closed for good ('end') when a failover lands while it reconnects; every
 * later command on it fails at once. The returned object forwards to the current client, so
 * code holding it (the runtime's `redis`) keeps working with the rebuilt one. Listeners added
 * on it belong to the client of the moment: use it for commands, not subscriptions.
 */
export function selfHealing(make: () => Redis, onRebuild?: (reason: string) => void): Redis {
  let closing = false;
  let current = make();
  // Lua commands defined through it (redis-scripts.ts) are defined again on each rebuilt client:
  // without them every scripted write failed after a failover ("no Redis script").
  const commands = new Map<string, Parameters<Redis['defineCommand']>[1]>();
  const watch = (c: Redis): void => {
    c.once('end', () => {
      if (closing || c !== current) return;
      onRebuild?.('the connection ended without being closed');
      current = make();
      for (const [name, def] of commands) current.defineCommand(name, def);
      watch(current);
    });
  };
  watch(current);
  const defineCommand: Redis['defineCommand'] = (name, def) => {
    commands.set(name, def);
    current.defineCommand(name, def);
  };
  return new Proxy(current, {
    get(_target, prop) {
      if (prop === 'defineCommand') return defineCommand;
      if (prop === 'quit' || prop === 'disconnect') closing = true;
      const v = Reflect.get(current, prop, current) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(current) : v;
    },
    set(_target, prop, value) {
      return Reflect.set(current, prop, value, current);
    },
  });
}
