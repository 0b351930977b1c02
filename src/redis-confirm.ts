/**
 * Writes that must survive a Redis Sentinel failover. Replication is asynchronous: a write the
 * primary accepted but its replica never got is lost when the replica is promoted (a killed
 * primary), and after `SENTINEL FAILOVER` the old primary stays writable for a while and every
 * write it takes then is lost when it is demoted. So state that matters (ledgers, per-VM
 * states, host locks, the lab's hosts) is confirmed with `WAIT <replicas> <ms>` on the
 * connection that wrote it; unconfirmed, the (idempotent) write is made again until the new
 * primary has it. A primary the sentinels name and that has no healthy replica at all (its
 * replica is the one that died) has nowhere to fail over to: its writes count as confirmed.
 *
 * Only with Sentinel (a connection built with `sentinels`) unless FERRY_REDIS_CONFIRM_REPLICAS
 * says otherwise; a single Redis has no replica to wait for.
 */
import { Redis } from 'ioredis';

export class UnconfirmedWriteError extends Error {
  constructor(what: string, ms: number) {
    super(`Redis did not confirm ${what} on a replica within ${Math.round(ms / 1000)} s (a failover that does not finish?)`);
    this.name = 'UnconfirmedWriteError';
  }
}

function envInt(name: string, dflt: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? NaN : Number(raw);
  return Number.isInteger(n) && n >= 0 ? n : dflt;
}

/** How many replicas a write waits for on this connection. */
export function replicasToConfirm(redis: Redis): number {
  const set = process.env.FERRY_REDIS_CONFIRM_REPLICAS;
  if (set !== undefined && set !== '') return envInt('FERRY_REDIS_CONFIRM_REPLICAS', 0);
  return redis.options.sentinels?.length ? 1 : 0;
}

/** One sentinel client per sentinel list, for the slow path only. */
const watchers = new Map<string, Redis>();

function sentinelClient(redis: Redis): Redis | undefined {
  const list = redis.options.sentinels;
  if (!list?.length) return undefined;
  const id = `${list.map((s) => `${s.host}:${s.port}`).join(',')}/${redis.options.name}`;
  let c = watchers.get(id);
  if (!c) {
    // A plain connection to whichever sentinel answers (rotated on every reconnect).
    let i = 0;
    const pick = () => list[i++ % list.length]!;
    const first = pick();
    c = new Redis({
      host: first.host ?? '127.0.0.1',
      port: first.port ?? 26379,
      ...(redis.options.sentinelPassword ? { password: redis.options.sentinelPassword } : {}),
      ...(redis.options.sentinelTLS ? { tls: redis.options.sentinelTLS } : {}),
      maxRetriesPerRequest: 1,
      connectTimeout: 1000,
      // A sentinel that does not answer (a partition) is no answer: not confirmed.
      commandTimeout: 1000,
      lazyConnect: true,
      retryStrategy: () => 100,
    });
    c.on('error', () => undefined);
    c.on('reconnecting', () => {
      const next = pick();
      c!.options.host = next.host ?? '127.0.0.1';
      c!.options.port = next.port ?? 26379;
    });
    watchers.set(id, c);
  }
  return c;
}

/** Closes the sentinel clients this module opened (process shutdown, tests). */
export function closeConfirmWatchers(): void {
  for (const c of watchers.values()) c.disconnect();
  watchers.clear();
}

function fields(flat: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const a = flat as string[];
  for (let i = 0; i + 1 < a.length; i += 2) out[a[i]!] = a[i + 1]!;
  return out;
}

/**
 * The node this connection writes to is the one the sentinels name, and the sentinels see no
 * healthy replica of it: no failover can take a write away from it now.
 */
async function solePrimary(redis: Redis): Promise<boolean> {
  const s = sentinelClient(redis);
  if (!s) return false;
  try {
    const name = redis.options.name ?? 'ferry';
    const [master, replicas, info] = await Promise.all([s.call('SENTINEL', 'MASTER', name), s.call('SENTINEL', 'REPLICAS', name), redis.info('server')]);
    const runId = /run_id:(\w+)/.exec(info)?.[1];
    const m = fields(master);
    if (!runId || m['runid'] !== runId || /down|failover/.test(m['flags'] ?? '')) return false;
    const healthy = (replicas as unknown[]).map(fields).filter((r) => !/s_down|o_down|disconnected/.test(r['flags'] ?? '') && r['master-link-status'] === 'ok');
    return healthy.length === 0;
  } catch {
    return false;
  }
}

/**
 * A connection the sentinels just judged the sole primary (until when): while it still has no
 * replica connected, its writes count as confirmed without another WAIT timeout each (a
 * promotion needs a healthy replica first, which takes longer than this).
 */
const sole = new WeakMap<Redis, { until: number; stream: unknown }>();

/**
 * The socket a connection writes on now. A reconnect (a failover's client kill, a demotion)
 * makes a new one: a write made before it and a check made after it were not on the same node.
 */
export function streamOf(redis: Redis): unknown {
  return (redis as unknown as { stream?: unknown }).stream;
}
const SOLE_FOR_MS = 1000;

/** Whether this connection's writes so far are on enough replicas (or cannot be lost to a failover). */
export async function confirmed(redis: Redis, wroteOn: unknown = streamOf(redis), timeoutMs = envInt('FERRY_REDIS_WAIT_MS', 1000)): Promise<boolean> {
  const n = replicasToConfirm(redis);
  if (n === 0) return true;
  // Written on the socket of the moment, judged on it too: anything else proves nothing.
  const same = () => wroteOn !== undefined && streamOf(redis) === wroteOn;
  const cached = sole.get(redis);
  if (cached && cached.until > Date.now() && cached.stream === wroteOn) {
    const info = await redis.info('replication').catch(() => '');
    if (/role:master/.test(info) && /connected_slaves:0\b/.test(info) && same()) return true;
    sole.delete(redis);
  }
  // A demoted primary refuses WAIT (it is a replica now): not confirmed, write again.
  const got = Number(await redis.call('WAIT', String(n), String(timeoutMs)).catch(() => -1));
  if (got >= n) return same();
  if (got < 0) return false;
  if (!(await solePrimary(redis)) || !same()) return false;
  sole.set(redis, { until: Date.now() + SOLE_FOR_MS, stream: wroteOn });
  return true;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Make an idempotent write and confirm it; unconfirmed, make it again (the connection follows
 * the sentinels to the new primary meanwhile) until confirmed or FERRY_REDIS_CONFIRM_MS
 * (default 120 s) has passed, then UnconfirmedWriteError. `onRetry` hears each unconfirmed try.
 */
export async function confirmedWrite<T>(redis: Redis, what: string, write: () => Promise<T>, onRetry?: (attempt: number) => void): Promise<T> {
  if (replicasToConfirm(redis) === 0) return write();
  return untilConfirmed(
    what,
    async () => {
      const wroteOn = streamOf(redis);
      const result = await write();
      return { result, confirmed: await confirmed(redis, wroteOn) };
    },
    onRetry,
  );
}

/**
 * The retry of confirmedWrite for a write that reports its own confirmation (a transaction
 * confirmed on its own connection, redis-tx.ts): made again until confirmed or FERRY_REDIS_CONFIRM_MS.
 */
export async function untilConfirmed<T>(what: string, attempt: () => Promise<{ result: T; confirmed: boolean }>, onRetry?: (attempt: number) => void): Promise<T> {
  const limit = envInt('FERRY_REDIS_CONFIRM_MS', 120_000);
  const deadline = Date.now() + limit;
  for (let n = 1; ; n++) {
    const { result, confirmed: ok } = await attempt();
    if (ok) return result;
    if (Date.now() > deadline) throw new UnconfirmedWriteError(what, limit);
    onRetry?.(n);
    await sleep(200);
  }
}
