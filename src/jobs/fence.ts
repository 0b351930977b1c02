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
  return e instanceof FencedOut || (e instanceof Error && /FERRY_FENCED/.test(e.message));
}

/**
 * Prefix a Lua script with the fence check: its last key is the lock key and its last argument
 * the token ('' when not fenced); both are taken off KEYS/ARGV before the script body runs.
 */
export function fencedScript(body: string): string {
  return `
local __fk = table.remove(KEYS)
local __ft = table.remove(ARGV)
if __ft ~= '' and redis.call('GET', __fk) ~= __ft then return redis.error_reply('FERRY_FENCED') end
${body}`;
}

/** Run a fencedScript body: the write happens only while this run holds its job. */
export async function fencedEval(redis: Redis, script: string, keys: string[], args: string[]): Promise<unknown> {
  const f = currentFence();
  try {
    return await redis.eval(script, keys.length + 1, ...keys, f?.lockKey ?? keys[0] ?? 'none', ...args, f?.token ?? '');
  } catch (e) {
    if (f && isFencedOut(e)) throw new FencedOut(f);
    throw e;
  }
}
