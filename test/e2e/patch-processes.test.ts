/**
 * Announcements exactly once with real processes and real time: two `ferry worker` processes
 * (the Procfile's worker, src/main.ts) share one Redis; one is killed with SIGKILL after the
 * first announcement and a new one starts. Each announcement reaches the conversation once.
 * (test/patch/announcements.test.ts covers the same rules in depth with a controllable clock.)
 */
import { afterAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { fastLabYaml, makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { startFerry, writeConfig, type FerryProcess } from '../support/processes.js';
import { ConsoleFeed, consoleStream } from '../../src/bot/console/surface.js';
import { renderText } from '../../src/bot/render/text.js';
import { WindowStore, type PatchWindow } from '../../src/jobs/workflows/patch-windows.js';
import { scheduleWindow } from '../../src/jobs/patch/scheduler.js';

const procs: FerryProcess[] = [];
let h: Harness | undefined;
let feed: ConsoleFeed | undefined;
afterAll(async () => {
  await feed?.stop();
  await h?.close();
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
});

describe('patch-window announcements across processes', () => {
  it('each announcement once, with a worker killed and replaced in between', async () => {
    const yaml = fastLabYaml('patchWindows:\n  announceOffsets: [4s, 0s]\n  announceEnd: true\n  scanInterval: 5s\n');
    const prefix = uniquePrefix('pwproc');
    const env = { REDIS_URL: inject('redisUrl'), FERRY_PREFIX: prefix, FERRY_CONFIG: writeConfig(yaml) };
    const [a, b] = [startFerry('worker', env), startFerry('worker', env)];
    procs.push(a, b);
    await Promise.all([a.waitForLine(/workers ready/), b.waitForLine(/workers ready/)]);

    h = await makeHarness({ yaml, prefix, workers: false });
    const posts: string[] = [];
    feed = new ConsoleFeed(h.rt.newConnection(), consoleStream(prefix, h.session), (ev) => {
      if (ev.kind === 'post') posts.push(renderText(ev.message));
    });
    await feed.start();

    // A window 8 s from now, 4 s long: announcements at +4 s (before), +8 s (start), +12 s (end).
    const store = new WindowStore(h.rt);
    const now = Date.now();
    const w: PatchWindow = {
      id: await store.nextId(),
      revision: 1,
      hosts: ['hyp01'],
      startMs: now + 8000,
      durationMs: 4000,
      zone: 'UTC',
      status: 'scheduled',
      createdAtMs: now,
      createdBy: 'alice',
      conv: { surface: 'console', session: h.session, user: 'alice' },
    };
    await store.save(w);
    await scheduleWindow(h.deps, w);

    await h.waitFor(async () => posts.some((p) => /Patch window \d+ starts /.test(p)), 'the 4s-before announcement', 15_000).catch(async (e: Error) => {
      const states = await store.announcementStates(w.id);
      throw new Error(`${e.message}\nstates: ${JSON.stringify(states)}\nwindow: ${JSON.stringify(await store.get(w.id))}\nworker a:\n${a.output().slice(-2500)}\nworker b:\n${b.output().slice(-2500)}\nposts:\n${posts.join('\n')}`);
    });
    await a.stop('SIGKILL');
    const c = startFerry('worker', env);
    procs.push(c);
    await c.waitForLine(/workers ready/);
    await h.waitFor(async () => posts.some((p) => /has ended/.test(p)), 'the end announcement', 30_000);
    // Give any duplicate (a second process, a retried job, the catch-up scan) time to show up.
    await new Promise((r) => setTimeout(r, 6000));

    const count = (re: RegExp) => posts.filter((p) => re.test(p)).length;
    expect(count(new RegExp(`Patch window ${w.id} starts `)), posts.join('\n---\n')).toBe(1);
    expect(count(new RegExp(`Patch window ${w.id} has started`)), posts.join('\n---\n')).toBe(1);
    expect(count(new RegExp(`Patch window ${w.id} has ended`)), posts.join('\n---\n')).toBe(1);
    expect(posts.join('\n')).not.toMatch(/posted late/);
  });
});
