/**
 * Fencing: a run of a job acts only while it still holds the job's BullMQ lock. When Redis is
 * away longer than the lock, BullMQ's stalled-job recovery starts a second run of the same job
 * while the first is still alive (and the host lock is re-entrant by operation id, so it does
 * not stop the second). The lock key holds the token of the run that owns the job now; every
 * mutating step of a run checks it atomically (in the same Lua script or WATCHed transaction
 * as the write) and a run that lost it stops with FencedOut before it acts.
 *
 * The run a piece of code belongs to travels with it (AsyncLocalStorage); code outside a job
 * (the web process, tests) is not fenced.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Redis } from 'ioredis';
import { FENCE_ERROR, runScript, type ScriptName } from '../redis-scripts.js';
import { confirmedWrite } from '../redis-confirm.js';

export interface Fence {
  /** BullMQ's lock key of the job: `<prefix>:<queue>:<jobId>:lock`. */
  lockKey: string;
  /** The token this run holds it with. */
  token: string;
  jobId: string;
}

export class FencedOut extends Error {
  constructor(readonly fence: Fence) {
    super(`this run of job ${fence.jobId} lost its lease (another run has it); it stops before acting`);
    this.name = 'FencedOut';
  }
}

const storage = new AsyncLocalStorage<Fence>();

export function withFence<T>(fence: Fence, fn: () => Promise<T>): Promise<T> {
  return storage.run(fence, fn);
}

export function currentFence(): Fence | undefined {
  return storage.getStore();
}

/** Throws FencedOut when this run no longer holds its job. */
export async function assertFence(redis: Redis): Promise<void> {
  const f = currentFence();
  if (!f) return;
  if ((await redis.get(f.lockKey)) !== f.token) throw new FencedOut(f);
}

export function isFencedOut(e: unknown): e is FencedOut {
  return e instanceof FencedOut || (e instanceof Error && e.message.includes(FENCE_ERROR));
}

/**
 * Run a fenced script (a src/lua file marked `-- fenced`): the write happens only while this run
 * holds its job. Its lock key and token go after the script's own keys and arguments. Every fenced
 * write is state that matters (ledger, VM states, host locks): with Sentinel it is confirmed on
 * the replica and made again if a failover lost it (the scripts are idempotent; see
 * redis-confirm.ts).
 */
export async function fencedEval(redis: Redis, script: ScriptName, keys: string[], args: string[]): Promise<unknown> {
  const f = currentFence();
  try {
    return await confirmedWrite(redis, `a write to ${keys[0] ?? 'Redis'}`, () => runScript(redis, script, [...keys, f?.lockKey ?? keys[0] ?? 'none'], [...args, f?.token ?? '']));
  } catch (e) {
    if (f && isFencedOut(e)) throw new FencedOut(f);
    throw e;
  }
}
