/**
 * Patch-window announcements over real Redis with a controllable clock: exactly once with two
 * Ferry processes (two runtimes, deps and worker sets over one Redis and one prefix), across a
 * restart, after a crash between claim and post, and none after a cancel.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { makeHarness, fastLabYaml, uniquePrefix, type Harness } from '../support/harness.js';
import { appendConsoleEvent, ConsoleFeed, consoleStream } from '../../src/bot/console/surface.js';
import { renderText } from '../../src/bot/render/text.js';
import { processWindow, scanWindows, WindowStore } from '../../src/jobs/workflows/patch-windows.js';

const H = 3_600_000;
const YAML = fastLabYaml(`patchWindows:\n  missed: late\n  scanInterval: 1h\n`);

/** A clock the test moves; shared by every "process" of a test. */
function testClock(start: number) {
  let now = start;
  return { now: () => now, set: (t: number) => (now = t), add: (ms: number) => (now += ms) };
}

interface Ears {
  posts: string[];
  /** Resolves once everything published into the session before the call is in posts. */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** Everything posted into one console session, whichever process posted it and across restarts. */
async function listen(redis: Redis, prefix: string, session: string): Promise<Ears> {
  const posts: string[] = [];
  // Connections of their own: the harness whose Redis this was may be closed mid-test.
  const pub = redis.duplicate();
  const markers = new Map<string, () => void>();
  let seq = 0;
  const feed = new ConsoleFeed(redis.duplicate(), consoleStream(prefix, session), (ev) => {
    if (ev.kind === 'post') posts.push(renderText(ev.message));
    else if (ev.kind === 'marker') markers.get(ev.id)?.();
  });
  await feed.start();
  return {
    posts,
    async sync() {
      // The stream is read in order: the marker comes after them.
      const id = `ears-${seq++}`;
      const arrived = new Promise<void>((resolve) => markers.set(id, resolve));
      await appendConsoleEvent(pub, prefix, session, { kind: 'marker', id });
      await arrived;
      markers.delete(id);
    },
    async close() {
      await feed.stop();
      await pub.quit().catch(() => undefined);
    },
  };
}

const count = (posts: string[], re: RegExp) => posts.filter((p) => re.test(p)).length;

let open: Harness[] = [];
let closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers) await c();
  for (const h of open) await h.close();
  open = [];
  closers = [];
});

async function twoProcesses(clock: { now(): number }) {
  const prefix = uniquePrefix('pw');
  const a = await makeHarness({ yaml: YAML, prefix, clock });
  const b = await makeHarness({ yaml: YAML, prefix, clock });
  open.push(a, b);
  const ears = await listen(a.rt.redis, prefix, a.session);
  closers.push(ears.close);
  return { prefix, a, b, ears };
}

/**
 * Both processes, several times each, at once: the worst case for duplicates. Returns once every
 * one of them has finished and everything they posted is in ears (no sleeping on a guess).
 */
async function raceScans(a: Harness, b: Harness, id: string, ears: Ears) {
  await Promise.all([scanWindows(a.deps), scanWindows(b.deps), processWindow(a.deps, id), processWindow(b.deps, id), scanWindows(a.deps), processWindow(b.deps, id)]);
  // And the same through the queues: both worker sets take 'timers' jobs.
  const jobs = await Promise.all([
    a.deps.queues.timers.add('patch-scan', {}, { jobId: `t-scan-a-${Date.now()}-${Math.random()}` }),
    b.deps.queues.timers.add('patch-scan', {}, { jobId: `t-scan-b-${Date.now()}-${Math.random()}` }),
    a.deps.queues.timers.add('patch-window', { windowId: id }, { jobId: `t-win-a-${Date.now()}-${Math.random()}` }),
  ]);
  await a.waitFor(async () => {
    const states = await Promise.all(jobs.map((j) => a.deps.queues.timers.getJobState(j.id!)));
    return states.every((st) => st === 'completed' || st === 'failed');
  }, 'the queued scans to finish');
  await ears.sync();
}

describe('patch-window announcements', () => {
  it('fire at the right times exactly once with two processes, and the window is recorded with its times', async () => {
    const base = Date.UTC(2030, 0, 10, 12, 0); // Thu 10 Jan 2030 12:00 UTC
    const clock = testClock(base);
    const { a, b, ears } = await twoProcesses(clock);
    await a.run('patch window hyp01..hyp04 at 2030-01-12 22:00 Europe/Amsterdam for 4h note "KB5031234"');
    await a.sync();
    expect(a.transcript()).toMatch(/Patch window 1 recorded: hyp01…hyp04 · Sat 12 Jan 22:00–02:00 Europe\/Amsterdam \(21:00–01:00 UTC\)/);
    expect(a.transcript()).toMatch(/24h before: Fri 11 Jan 22:00 Europe\/Amsterdam \(21:00 UTC\)/);
    const start = Date.UTC(2030, 0, 12, 21, 0);

    // Not yet due: nothing, however hard both processes try.
    clock.set(start - 24 * H - 60_000);
    await raceScans(a, b, '1', ears);
    expect(count(ears.posts, /Patch window 1 starts/)).toBe(0);

    clock.set(start - 24 * H + 5_000);
    await raceScans(a, b, '1', ears);
    expect(count(ears.posts, /Patch window 1 starts in 1d|Patch window 1 starts in 24h/)).toBe(1);

    clock.set(start - H + 1_000);
    await raceScans(a, b, '1', ears);
    expect(count(ears.posts, /Patch window 1 starts in 1h/)).toBe(1);

    clock.set(start + 2_000);
    await raceScans(a, b, '1', ears);
    expect(count(ears.posts, /Patch window 1 has started/)).toBe(1);

    clock.set(start + 4 * H + 2_000);
    await raceScans(a, b, '1', ears);
    await raceScans(a, b, '1', ears);
    expect(count(ears.posts, /Patch window 1 has ended/)).toBe(1);
    // Four announcements in all, none marked late, each once.
    expect(count(ears.posts, /Patch window 1 (starts|has started|has ended)/)).toBe(4);
    expect(ears.posts.join('\n')).not.toMatch(/posted late/);
    const states = await new WindowStore(a.rt).announcementStates('1');
    expect(Object.entries(states).filter(([k, v]) => !k.includes('@') && v.state === 'posted').map(([k]) => k).sort()).toEqual(['1:1:before-1h', '1:1:before-24h', '1:1:end', '1:1:start']);
    expect((await new WindowStore(a.rt).get('1'))?.status).toBe('completed');
  });

  it('a window made by a command outside a thread announces in the thread of its recorded answer ("this thread")', async () => {
    const base = Date.UTC(2030, 2, 1, 8, 0);
    const clock = testClock(base);
    const h = await makeHarness({ yaml: YAML, prefix: uniquePrefix('pw-thread'), clock });
    open.push(h);
    await h.run('patch window hyp06 at 2030-03-03 10:00 UTC for 2h');
    const recorded = await h.waitFor(async () => h.events.find((e) => e.kind === 'post' && renderText(e.message).includes('Patch window 1 recorded')), 'the recorded answer');
    expect(renderText(recorded.message)).toContain('this thread');
    clock.set(Date.UTC(2030, 2, 2, 10, 0) + 1_000);
    await processWindow(h.deps, '1');
    const ann = await h.waitFor(async () => h.events.find((e) => e.kind === 'post' && renderText(e.message).includes('Patch window 1 starts in')), 'the 24h announcement');
    expect(ann.kind === 'post' && recorded.kind === 'post' && ann.threadTs).toBe(recorded.kind === 'post' ? recorded.ref.ts : 'x');
  });

  it('a restart in between loses none and doubles none; a missed one is posted marked late', async () => {
    const base = Date.UTC(2030, 1, 1, 8, 0);
    const clock = testClock(base);
    const prefix = uniquePrefix('pw-restart');
    const a = await makeHarness({ yaml: YAML, prefix, clock });
    const b = await makeHarness({ yaml: YAML, prefix, clock });
    const ears = await listen(a.rt.redis, prefix, a.session);
    closers.push(ears.close);
    await a.run('patch window hyp05 at 2030-02-03 10:00 UTC for 2h');
    await a.sync();
    const start = Date.UTC(2030, 1, 3, 10, 0);
    clock.set(start - 24 * H + 1_000);
    await raceScans(a, b, '1', ears);
    expect(count(ears.posts, /starts in/)).toBe(1);

    // Both processes go down; the 1h announcement falls due while nobody runs.
    await a.close();
    await b.close();
    clock.set(start - 30 * 60_000);
    const c = await makeHarness({ yaml: YAML, prefix, clock });
    const d = await makeHarness({ yaml: YAML, prefix, clock });
    open.push(c, d);
    await raceScans(c, d, '1', ears);
    const late = ears.posts.filter((p) => /starts in 30m/.test(p));
    expect(late).toHaveLength(1);
    expect(late[0]).toMatch(/posted late: Ferry was unavailable at Sun 3 Feb 09:00 UTC/);
    expect(count(ears.posts, /starts in/)).toBe(2); // the 24h one was not posted again

    clock.set(start + 1_000);
    await raceScans(c, d, '1', ears);
    clock.set(start + 2 * H + 1_000);
    await raceScans(c, d, '1', ears);
    expect(count(ears.posts, /has started/)).toBe(1);
    expect(count(ears.posts, /has ended/)).toBe(1);
  });

  it('missed policy skip: an announcement missed while Ferry was down is recorded as skipped, not posted', async () => {
    const base = Date.UTC(2030, 2, 1, 8, 0);
    const clock = testClock(base);
    const prefix = uniquePrefix('pw-skip');
    const yaml = fastLabYaml(`patchWindows:\n  missed: skip\n  scanInterval: 1h\n`);
    const a = await makeHarness({ yaml, prefix, clock });
    open.push(a);
    const ears = await listen(a.rt.redis, prefix, a.session);
    closers.push(ears.close);
    await a.run('patch window hyp06 at 2030-03-03 10:00 UTC for 2h');
    await a.sync();
    clock.set(Date.UTC(2030, 2, 3, 9, 30)); // 24h and 1h both missed
    await scanWindows(a.deps);
    await ears.sync();
    expect(count(ears.posts, /starts in/)).toBe(0);
    const states = await new WindowStore(a.rt).announcementStates('1');
    expect(states['1:1:before-1h']).toMatchObject({ state: 'skipped', reason: 'missed' });
    expect(states['1:1:before-24h']).toMatchObject({ state: 'skipped' });
  });

  it('a process that died between claim and post: the claim is finished by another process, once', async () => {
    const base = Date.UTC(2030, 3, 1, 8, 0);
    const clock = testClock(base);
    const { a, b, ears } = await twoProcesses(clock);
    await a.run('patch window hyp07 at 2030-04-01 10:00 UTC for 1h');
    await a.sync();
    const start = Date.UTC(2030, 3, 1, 10, 0);
    clock.set(start + 1_000);
    // Simulate the crash: the 'start' announcement is claimed (by a dead pid) and nothing posted.
    const store = new WindowStore(a.rt);
    await store.claim('1', '1:1:start', { state: 'posting', by: 'dead', atMs: clock.now(), token: 'x' });
    await raceScans(a, b, '1', ears);
    expect(count(ears.posts, /has started/)).toBe(0); // a live claim is respected
    clock.add(3 * 60_000);
    await raceScans(a, b, '1', ears);
    await raceScans(a, b, '1', ears);
    expect(count(ears.posts, /has started/)).toBe(1);
    expect((await store.announcementStates('1'))['1:1:start']).toMatchObject({ state: 'posted', retried: true });
  });

  it('cancel stops the rest and says so once', async () => {
    const base = Date.UTC(2030, 4, 1, 8, 0);
    const clock = testClock(base);
    const { a, b, ears } = await twoProcesses(clock);
    await a.run('patch window hyp08,hyp09 at 2030-05-03 10:00 UTC for 2h note "KB1"');
    await a.sync();
    const start = Date.UTC(2030, 4, 3, 10, 0);
    clock.set(start - 24 * H + 1_000);
    await raceScans(a, b, '1', ears);
    expect(count(ears.posts, /starts in/)).toBe(1);
    await Promise.all([a.run('cancel patch window 1'), b.run('cancel patch window 1', 'bob')]);
    await a.waitFor(async () => count(ears.posts, /Patch window 1 is cancelled by/) >= 1, 'the cancel notice');
    await ears.sync();
    expect(count(ears.posts, /Patch window 1 is cancelled by/)).toBe(1);
    for (const t of [start - H + 1_000, start + 1_000, start + 2 * H + 1_000]) {
      clock.set(t);
      await raceScans(a, b, '1', ears);
    }
    expect(count(ears.posts, /starts in|has started|has ended/)).toBe(1);
    const states = await new WindowStore(a.rt).announcementStates('1');
    expect(states['1:1:start']).toMatchObject({ state: 'skipped', reason: 'cancelled' });
    // Listed no more.
    await a.run('patch windows');
    await a.sync();
    expect(a.transcript()).toMatch(/No upcoming patch windows/);
  });
});
