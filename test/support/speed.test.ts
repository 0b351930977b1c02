/**
 * The slowness factor: the run's figure is a floor, a file measures again as it loads and a wait
 * that starts a few seconds later measures again; the factor never drops within a file.
 */
import os from 'node:os';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';

const ENV = 'FERRY_TEST_SLOWNESS';
let saved: string | undefined;

async function fresh(env: string | undefined, load: number) {
  if (env === undefined) delete process.env[ENV];
  else process.env[ENV] = env;
  vi.spyOn(os, 'loadavg').mockReturnValue([load, load, load]);
  // The busy loop always gets a whole core here, so the mocked load alone decides the factor.
  vi.spyOn(process, 'cpuUsage').mockReturnValue({ user: 1e9, system: 0 });
  vi.resetModules();
  return import('./speed.js');
}

beforeEach(() => {
  saved = process.env[ENV];
});
afterEach(() => {
  if (saved === undefined) delete process.env[ENV];
  else process.env[ENV] = saved;
  vi.restoreAllMocks();
  vi.useRealTimers();
});

const cores = os.availableParallelism();

it("keeps the run's figure when the file finds the machine idler", async () => {
  const run = { factor: 6, why: 'time bounds ×6: measured at the start of the run, load 12.0 on 2 cores' };
  const speed = await fresh(JSON.stringify(run), 0);
  expect(speed.slowness()).toEqual(run);
  expect(speed.timeBound(1000)).toEqual({ ms: 6000, why: run.why });
});

it("takes the file's own measure when the machine got busier after the run started", async () => {
  const speed = await fresh(JSON.stringify({ factor: 1, why: 'time bounds ×1: measured at the start of the run' }), 8 * cores);
  const s = speed.slowness();
  expect(s.factor).toBe(8);
  expect(s.why).toMatch(/^time bounds ×8: measured as this file loaded, load [\d.]+ on \d+ cores/);
  expect(speed.bound(1000)).toBe(8000);
});

it('measures again when a wait starts a few seconds later, and never drops', async () => {
  vi.useFakeTimers({ toFake: ['Date'] });
  const speed = await fresh(undefined, 2 * cores);
  expect(speed.slowness().factor).toBe(2);
  vi.mocked(os.loadavg).mockReturnValue([5 * cores, 0, 0]);
  expect(speed.slowness().factor, 'cached within a few seconds').toBe(2);
  vi.setSystemTime(Date.now() + 6000);
  const later = speed.timeBound(1000);
  expect(later.ms).toBe(5000);
  expect(later.why).toMatch(/measured at \d\d:\d\d:\d\d UTC/);
  vi.mocked(os.loadavg).mockReturnValue([0, 0, 0]);
  vi.setSystemTime(Date.now() + 6000);
  expect(speed.slowness().factor, 'an idler moment does not shorten bounds within the file').toBe(5);
});

it('a number in FERRY_TEST_SLOWNESS fixes the factor', async () => {
  const speed = await fresh('3', 10 * cores);
  expect(speed.slowness()).toEqual({ factor: 3, why: 'time bounds ×3 (FERRY_TEST_SLOWNESS)' });
});

it('is clamped to ×10', async () => {
  const speed = await fresh(undefined, 50 * cores);
  expect(speed.slowness().factor).toBe(10);
});
