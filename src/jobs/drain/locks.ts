/**
 * Host locks: one mutating operation per host at a time (drain, restore, migrate). The lock is
 * a Redis key holding who owns it and for which job, with a TTL the running job keeps
 * refreshing; a worker killed mid-step stops refreshing, so the lock frees itself, and the
 * job that resumes under the same op id takes it back (re-entrant by op id).
 */
import type { Runtime } from '../../runtime.js';
import { mention } from '../../core/permissions.js';
import { fencedEval } from '../fence.js';

export interface HostLock {
  host: string;
  opId: number;
  owner: string;
  /** "drain", "restore", "migrate": what the owner is doing to the host. */
  op: string;
  at: number;
}

/** FERRY_LOCK_TTL_MS: tests shorten it so keepers tick within a test's time (keepers run at a quarter of it, at least 1 s). */
export const LOCK_TTL_MS = Number(process.env.FERRY_LOCK_TTL_MS ?? 60_000);

function lockKey(rt: Runtime, host: string): string {
  return rt.key('lock', 'host', host);
}

const VERB: Record<string, string> = { drain: 'drained', restore: 'restored', migrate: 'used by a migration' };

/** "hyp03 is being drained by @alice (job 41)." */
export function lockedSentence(lock: HostLock): string {
  return `${lock.host} is being ${VERB[lock.op] ?? lock.op} by ${mention(lock.owner)} (job ${lock.opId}).`;
}

export async function readLock(rt: Runtime, host: string): Promise<HostLock | null> {
  const raw = await rt.redis.get(lockKey(rt, host));
  return raw ? (JSON.parse(raw) as HostLock) : null;
}

/** Take the host for `opId`; returns null on success, else the holder. */
export async function acquireLock(rt: Runtime, lock: Omit<HostLock, 'at'>, ttlMs = LOCK_TTL_MS): Promise<HostLock | null> {
  const doc: HostLock = { ...lock, at: rt.clock.now() };
  const held = (await fencedEval(rt.redis, 'host-lock-acquire', [lockKey(rt, lock.host)], [JSON.stringify(doc), String(lock.opId), String(ttlMs)])) as string | null;
  return held ? (JSON.parse(held) as HostLock) : null;
}

/** Several hosts, all or nothing (a migrate locks source and target). */
export async function acquireLocks(rt: Runtime, hosts: string[], lock: Omit<HostLock, 'at' | 'host'>, ttlMs = LOCK_TTL_MS): Promise<HostLock | null> {
  const got: string[] = [];
  for (const host of [...new Set(hosts)].sort()) {
    const held = await acquireLock(rt, { ...lock, host }, ttlMs);
    if (held) {
      for (const h of got) await releaseLock(rt, h, lock.opId);
      return held;
    }
    got.push(host);
  }
  return null;
}

export async function refreshLock(rt: Runtime, host: string, opId: number, ttlMs = LOCK_TTL_MS): Promise<boolean> {
  return (await fencedEval(rt.redis, 'host-lock-refresh', [lockKey(rt, host)], [String(opId), String(ttlMs)])) === 1;
}

/** Releases asked for in this process: a keeper must not take back a lock its step let go. */
const released = new Set<string>();
const relKey = (rt: Runtime, host: string, opId: number) => `${rt.prefix}:${host}:${opId}`;

export async function releaseLock(rt: Runtime, host: string, opId: number): Promise<void> {
  if (released.size > 10_000) released.delete(released.values().next().value!);
  released.add(relKey(rt, host, opId));
  await fencedEval(rt.redis, 'host-lock-refresh', [lockKey(rt, host)], [String(opId), 'release']);
}

export interface LockKeeper {
  stop(): void;
  /** The holder of a lock this keeper lost to another operation, if it did. */
  lost(): HostLock | null;
  /** Refresh (or take back) now; the holder when another operation has a host. */
  check(): Promise<HostLock | null>;
}

/**
 * Keep the locks alive while a job runs; stop() when the step ends (or the process dies).
 * A lock that is gone (it expired, e.g. Redis was unreachable for longer than its TTL) is
 * taken back when `as` says who holds it; one another operation took meanwhile is lost:
 * lost()/check() say so, and the step stops at its next safe point.
 */
export function keepLocks(rt: Runtime, hosts: string[], opId: number, ttlMs = LOCK_TTL_MS, as?: { owner: string; op: string }): LockKeeper {
  let stopped = false;
  let lostTo: HostLock | null = null;
  for (const h of hosts) released.delete(relKey(rt, h, opId));
  const keep = async (host: string): Promise<HostLock | null> => {
    if (await refreshLock(rt, host, opId, ttlMs)) return null;
    if (stopped || released.has(relKey(rt, host, opId))) return null;
    if (!as) {
      const cur = await readLock(rt, host);
      return cur && cur.opId !== opId ? cur : null;
    }
    const held = await acquireLock(rt, { host, opId, owner: as.owner, op: as.op }, ttlMs);
    if (held) return held;
    // Let go in the meantime (the step finished): do not keep what was just released.
    if (stopped || released.has(relKey(rt, host, opId))) await fencedEval(rt.redis, 'host-lock-refresh', [lockKey(rt, host)], [String(opId), 'release']);
    return null;
  };
  const check = async (): Promise<HostLock | null> => {
    for (const h of hosts) {
      try {
        const held = await keep(h);
        if (held) lostTo ??= held;
      } catch {
        // Redis unreachable: nothing to decide until it answers again.
      }
    }
    return lostTo;
  };
  const timer = setInterval(() => void check(), Math.max(1000, Math.floor(ttlMs / 4)));
  timer.unref();
  return {
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
    lost: () => lostTo,
    check,
  };
}
