/** Bad patch-window input: one clear sentence each, nothing recorded, nothing scheduled. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeHarness, fastLabYaml, type Harness } from '../support/harness.js';
import { WindowStore } from '../../src/jobs/workflows/patch-windows.js';

const base = Date.UTC(2030, 5, 10, 12, 0); // Mon 10 Jun 2030 12:00 UTC
let h: Harness;

beforeAll(async () => {
  // A vSphere cluster beside the lab: its hosts cannot run the command hook (never contacted here).
  const yaml = fastLabYaml('patchWindows:\n  maxDuration: 8h\n  hook: {command: "install-updates"}\n').replace(
    'clusters:\n',
    'clusters:\n  esx:\n    adapter: vsphere\n    hosts: ["esx[01-02]"]\n    vsphere: {url: "https://vcenter.invalid/sdk", user: svc, password: secret}\n',
  );
  h = await makeHarness({ yaml, clock: { now: () => base }, workers: false });
  // One window for the overlap case.
  await h.run('patch window hyp01..hyp04 at 2030-06-12 22:00 UTC for 4h');
  await h.sync();
});
afterAll(async () => h.close());

const cases: [string, string, RegExp][] = [
  ['a time in the past', 'patch window hyp10 at 2030-06-01 10:00 UTC for 2h', /^2030-06-01 10:00 UTC is in the past; it is now 2030-06-10 12:00 UTC\. Nothing was scheduled\.$/],
  ['an unknown zone', 'patch window hyp10 at 2030-06-12 10:00 Europe/Amsterdan for 2h', /^Europe\/Amsterdan is not a time zone; did you mean Europe\/Amsterdam\? Nothing was scheduled\.$/],
  ['an abbreviation for a zone', 'patch window hyp10 at 2030-06-12 10:00 CET for 2h', /^CET is an abbreviation, not a time zone; use a zone name such as Europe\/Amsterdam\. Nothing was scheduled\.$/],
  ['a local time the clock skips (DST gap)', 'patch window hyp10 at 2031-03-30 02:30 Europe/Amsterdam for 2h', /^2031-03-30 02:30 Europe\/Amsterdam does not exist: clocks jump from 02:00 to 03:00 that night; pick 01:30 or 03:30\. Nothing was scheduled\.$/],
  ['an overlap on the same host', 'patch window hyp04,hyp05 at 2030-06-13 00:00 UTC for 2h', /^hyp04 is already in window 1 \(Wed 12 Jun 22:00–02:00 UTC\)\. Nothing was scheduled\.$/],
  ['a zero duration', 'patch window hyp10 at 2030-06-12 10:00 UTC for 0m', /^A patch window needs a duration longer than zero, e\.g\. "for 4h"\. Nothing was scheduled\.$/],
  ['a duration over the maximum', 'patch window hyp10 at 2030-06-12 10:00 UTC for 9h', /^A 9h window is longer than the maximum of 8h \(patchWindows\.maxDuration\); split it into shorter windows\. Nothing was scheduled\.$/],
  ['a selector with unknown hosts', 'patch window hyp10,hyp777 at 2030-06-12 10:00 UTC for 2h', /hyp777 is not in the inventory.*Nothing was (started|scheduled)\.$/],
  [
    'a rolling window with a command hook over hosts whose adapter cannot run it (vSphere)',
    'patch window hyp10,esx01..esx02 at 2030-06-12 10:00 UTC for 2h rolling',
    /^The patch hook is a command, which the vsphere adapter of esx01, esx02 cannot run \(ESXi hosts are patched through vSphere Lifecycle Manager\); use a manual hook \(patchWindows\.hook: \{manual: true\}\) or leave these hosts out of the rolling window\. Nothing was scheduled\.$/,
  ],
];

describe('patch window: bad input', () => {
  it.each(cases)('%s', async (_name, line, sentence) => {
    const before = h.ephemerals().length;
    const timersBefore = await h.deps.queues.timers.getJobCounts('delayed', 'waiting');
    await h.run(line);
    // The refusal was published before h.run returned; the barrier brings it (and anything else said) in.
    await h.sync();
    const said = h.ephemerals().slice(before);
    expect(said).toHaveLength(1);
    expect(said[0]!.trim()).toMatch(sentence);
    // One sentence: no line breaks, a single final full stop after "Nothing was …".
    expect(said[0]!.trim()).not.toContain('\n');
    const windows = await new WindowStore(h.rt).list({ includeCancelled: true });
    expect(windows.map((w) => w.id)).toEqual(['1']);
    expect(await h.deps.queues.timers.getJobCounts('delayed', 'waiting')).toEqual(timersBefore);
  });
});
