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
