/**
 * An adapter call cut short leaves its trace (issue 13, item 10): the audit intent is written
 * before the call. The worker runs in its own process and is killed mid-migration.
 */
import { afterEach, expect, it } from 'vitest';
import { inject } from 'vitest';
import { makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { DrainWorkers } from '../support/drain-worker-process.js';
import { percents, vmStates } from '../../src/jobs/drain/steps.js';
import { drainLabYaml, setHostVms } from '../support/drain-support.js';
import { bound } from '../support/speed.js';

let h: Harness | undefined;
const workers = new DrainWorkers(inject('redisUrl'));

afterEach(async () => {
  workers.killAll();
  await h?.close();
});

it('a migration interrupted by SIGKILL is in the audit as started', async () => {
  const yaml = drainLabYaml({ migrationMs: 4000, concurrency: 1 });
  const prefix = uniquePrefix('intent');
  h = await makeHarness({ yaml, prefix, workers: false });
  await setHostVms(h.deps, 'hyp03', 3);
  const w = await workers.start(yaml, prefix);
  const op = await h.planned('drain hyp03');
  await h.run(`start ${op.id}`);
  // In flight: the platform reports progress of its migration.
  const moving = await h.waitFor(async () => {
    const pct = await percents(h!.deps, op.id);
    return Object.values(await vmStates(h!.deps, op.id)).find((s) => s.state === 'moving' && pct[s.name] !== undefined);
  }, 'a VM in flight', 60_000);
  await workers.kill(w);
  const raw = (await h.rt.redis.xrange(`${prefix}:audit`, '-', '+')) as [string, string[]][];
  const entries = raw.map(([, f]) => JSON.parse(f[f.indexOf('json') + 1]!) as { action: string; outcome: string; targets: string[] });
  const mine = entries.filter((e) => e.action === 'migrateVm' && e.targets[0] === moving.name);
  expect(mine.map((e) => e.outcome)).toEqual(['started']);
}, bound(120_000));
