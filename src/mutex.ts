/**
 * One Redis mutex for every short critical section across processes (a cluster's maintenance
 * gate, a rolling run's record, the patch-window store). Taken with SET NX PX (its TTL guards a
 * holder that died); released by mutex-unlock.lua only by the token that holds it, which also
 * pushes a wake-up. A waiter blocks on that wake-up (BLPOP on its own connection, so it never
 * spins) with a bounded backoff as the timeout, in case the holder's TTL ran out instead.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { runScript } from './redis-scripts.js';

export interface MutexOptions {
  /** How long the mutex outlives a holder that died. */
  ttlMs: number;
  /** How long to wait for it before giving up. */
  waitMs: number;
}

export interface HeldMutex {
  release(): Promise<void>;
}

const FIRST_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 1000;

const wakeKey = (key: string): string => `${key}:wake`;

/** Take the mutex, waiting up to waitMs; null when it stayed busy. */
export async function acquireMutex(redis: Redis, key: string, opts: MutexOptions): Promise<HeldMutex | null> {
  const token = randomBytes(12).toString('hex');
  const deadline = Date.now() + opts.waitMs;
  let waiter: Redis | undefined;
  let backoff = FIRST_BACKOFF_MS;
  try {
    while (!(await redis.set(key, token, 'PX', opts.ttlMs, 'NX'))) {
      const left = deadline - Date.now();
      if (left <= 0) return null;
      waiter ??= redis.duplicate();
      // BLPOP takes seconds (decimals allowed); it returns at the holder's release.
      await waiter.blpop(wakeKey(key), Math.max(0.01, Math.min(left, backoff) / 1000));
      backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
    }
  } finally {
    waiter?.disconnect();
  }
  return {
    async release() {
      await runScript(redis, 'mutex-unlock', [key, wakeKey(key)], [token, String(Math.max(1000, opts.ttlMs))]);
    },
  };
}

/** Run fn holding the mutex; { ok: false } when it could not be had within waitMs. */
export async function withMutex<T>(redis: Redis, key: string, opts: MutexOptions, fn: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false }> {
  const held = await acquireMutex(redis, key, opts);
  if (!held) return { ok: false };
  try {
    return { ok: true, value: await fn() };
  } finally {
    await held.release();
  }
}
