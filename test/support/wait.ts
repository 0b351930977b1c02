/**
 * Poll until a probe holds, within an idle-machine bound scaled by the run's measured slowness
 * (test/support/speed.ts). For state that changes without an event to await (a remote process
 * exiting, a key expiring); the failure names what was awaited and the scaling.
 */
import { timeBound } from './speed.js';

export async function eventually<T>(probe: () => Promise<T | undefined | null | false> | T | undefined | null | false, what: string, idleMs = 5000, limitMs?: number): Promise<T> {
  // Scaled as the wait starts (the load may have changed since the file loaded).
  const limit = limitMs === undefined ? timeBound(idleMs) : { ms: limitMs, why: 'a bound the caller derived' };
  const deadline = Date.now() + limit.ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${limit.ms} ms waiting for ${what} (${limit.why})`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * A promise that settles within an idle-machine bound scaled as the wait starts; past the bound
 * it fails with `${failure} within N ms (the scaling)` and, from detail(), what is known then
 * (a process's output), instead of leaving the test to its silent backstop.
 */
export async function within<T>(p: Promise<T>, failure: string, idleMs: number, detail?: () => string): Promise<T> {
  const limit = timeBound(idleMs);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${failure} within ${limit.ms} ms (${limit.why})${detail ? `\n${detail()}` : ''}`)), limit.ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
