/**
 * How much slower than idle this machine is, measured once at the start of a run (vitest.config.ts
 * measures it and hands it to the workers in FERRY_TEST_SLOWNESS; a file run another way
 * measures its own). Time bounds in tests are an idle figure times this factor, and a bound that
 * runs out says so, so a failure on a busy machine reads as "slow machine", not as a bug.
 *
 * Two measurements, the larger wins: the 1-minute load average per core (the queue every
 * process here waits in), and the share of a core a 100 ms busy loop actually got (wall time
 * over CPU time). Clamped to 1…10; FERRY_TEST_SLOWNESS=<number> overrides.
 */
import os from 'node:os';

export interface Slowness {
  factor: number;
  /** One sentence for failure messages. */
  why: string;
}

const ENV = 'FERRY_TEST_SLOWNESS';

export function measureSlowness(): Slowness {
  const cores = os.availableParallelism();
  const load = os.loadavg()[0]!;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let x = 0;
  while (Number(process.hrtime.bigint() - t0) < 100e6) x = (x + 1) % 1e9;
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = Math.max(1, (cpu.user + cpu.system) / 1000);
  const share = Math.min(1, cpuMs / wallMs);
  const factor = Math.round(Math.min(10, Math.max(1, load / cores, 1 / share)) * 10) / 10;
  return { factor, why: `time bounds ×${factor}: measured at start, load ${load.toFixed(1)} on ${cores} cores, a busy loop got ${Math.round(share * 100)}% of a core` };
}

let cached: Slowness | undefined;

export function slowness(): Slowness {
  if (cached) return cached;
  const env = process.env[ENV];
  if (env) {
    try {
      const parsed = JSON.parse(env) as Slowness | number;
      cached = typeof parsed === 'number' ? { factor: Math.max(1, parsed), why: `time bounds ×${parsed} (${ENV})` } : parsed;
    } catch {
      cached = undefined;
    }
  }
  cached ??= measureSlowness();
  return cached;
}

/** An idle-machine time in ms scaled for this run. */
export function bound(idleMs: number): number {
  return Math.round(idleMs * slowness().factor);
}

/** Export the measurement for child processes (vitest workers, spawned Ferry processes). */
export function exportSlowness(s: Slowness = slowness()): Slowness {
  process.env[ENV] = JSON.stringify(s);
  return s;
}
