/**
 * Poll until a probe holds, within an idle-machine bound scaled by the run's measured slowness
 * (test/support/speed.ts). For state that changes without an event to await (a remote process
 * exiting, a key expiring); the failure names what was awaited and the scaling.
 */
import { bound, slowness } from './speed.js';

export async function eventually<T>(probe: () => Promise<T | undefined | null | false> | T | undefined | null | false, what: string, idleMs = 5000, limitMs = bound(idleMs)): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${limitMs} ms waiting for ${what} (${slowness().why})`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
