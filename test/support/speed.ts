/**
 * How much slower than idle this machine is. Time bounds in tests are an idle figure times this
 * factor, and a bound that runs out says so, so a failure on a busy machine reads as "slow
 * machine", not as a bug.
 *
 * The load changes during a run (the QEMU pair, another suite beside this one), so one figure
 * taken at the start is not enough: vitest.config.ts measures at the start of the run and hands
 * the figure to the workers in FERRY_TEST_SLOWNESS; each test file measures again when it loads
 * (test/support/per-file.ts), and again when a wait starts if the last measure is a few seconds
 * old. The factor never drops below the run's figure or an earlier measure of the same file.
 *
 * One measure is the larger of: the 1-minute load average per core (the queue every process
 * here waits in), and wall time over CPU time of a short busy loop (the share of a core it got).
 * Clamped to 1…10. FERRY_TEST_SLOWNESS=<number> fixes the factor (no measuring).
 */
import os from 'node:os';

export interface Slowness {
  factor: number;
  /** One sentence for failure messages. */
  why: string;
}

/** A bound ready to use: the scaled time and the sentence that explains it. */
export interface Bound {
  ms: number;
  why: string;
}

const ENV = 'FERRY_TEST_SLOWNESS';
/** Long enough to span a few scheduler slices, short enough to run at every file's start. */
const SAMPLE_MS = 30;
/** A wait that starts later than this after the last measure measures again. */
const STALE_MS = 5000;

export function measureSlowness(sampleMs = SAMPLE_MS, when = 'now'): Slowness {
  const cores = os.availableParallelism();
  const load = os.loadavg()[0]!;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let x = 0;
  while (Number(process.hrtime.bigint() - t0) < sampleMs * 1e6) x = (x + 1) % 1e9;
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = Math.max(1, (cpu.user + cpu.system) / 1000);
  const share = Math.min(1, cpuMs / wallMs);
  const factor = Math.round(Math.min(10, Math.max(1, load / cores, 1 / share)) * 10) / 10;
  return { factor, why: `time bounds ×${factor}: measured ${when}, load ${load.toFixed(1)} on ${cores} cores, a ${sampleMs} ms busy loop got ${Math.round(share * 100)}% of a core` };
}

type FromEnv = { kind: 'fixed'; s: Slowness } | { kind: 'run'; s: Slowness } | undefined;

function fromEnv(): FromEnv {
  const env = process.env[ENV];
  if (!env) return undefined;
  try {
    const parsed = JSON.parse(env) as Slowness | number;
    if (typeof parsed === 'number') return { kind: 'fixed', s: { factor: Math.max(1, parsed), why: `time bounds ×${Math.max(1, parsed)} (${ENV})` } };
    if (typeof parsed?.factor === 'number' && typeof parsed.why === 'string') return { kind: 'run', s: parsed };
  } catch {
    // Not ours: measure instead.
  }
  return undefined;
}

let current: { s: Slowness; at: number } | undefined;

const larger = (a: Slowness, b: Slowness | undefined): Slowness => (b && b.factor > a.factor ? b : a);

/**
 * The factor now: the run's figure, this file's earlier measures and a fresh one if the last is
 * more than a few seconds old, whichever is largest.
 */
export function slowness(): Slowness {
  const env = fromEnv();
  if (env?.kind === 'fixed') return env.s;
  if (current && Date.now() - current.at < STALE_MS) return current.s;
  const when = current ? `at ${new Date().toISOString().slice(11, 19)} UTC` : 'as this file loaded';
  const s = larger(larger(measureSlowness(SAMPLE_MS, when), current?.s), env?.s);
  current = { s, at: Date.now() };
  return s;
}

/** An idle-machine time in ms scaled by the factor now, with the sentence that explains it. */
export function timeBound(idleMs: number): Bound {
  const s = slowness();
  return { ms: Math.round(idleMs * s.factor), why: s.why };
}

/** An idle-machine time in ms scaled by the factor now. */
export function bound(idleMs: number): number {
  return timeBound(idleMs).ms;
}

/** The run's figure, measured once at its start (vitest.config.ts), for the workers to start from. */
export function measureRun(): Slowness {
  const env = fromEnv();
  if (env) return env.s;
  const s = measureSlowness(100, 'at the start of the run');
  process.env[ENV] = JSON.stringify(s);
  return s;
}
