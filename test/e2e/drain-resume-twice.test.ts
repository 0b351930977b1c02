/**
 * A drain whose worker is killed twice (two deploys, an OOM and a deploy): BullMQ's stalled-job
 * recovery must re-run it both times, and the drain finishes with no VM moved twice. Past the
 * stall limit the operation must still end reported, not stay "running" with nobody told.
 */
import { afterEach, expect, it } from 'vitest';
import { inject } from 'vitest';
import { makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { DrainWorkers } from '../support/drain-worker-process.js';
import { readLedger } from '../../src/jobs/drain/ledger.js';
import { vmStates } from '../../src/jobs/drain/steps.js';
import { drainLabYaml, migrationsPerVm, setHostVms } from '../support/drain-support.js';
import { bound } from '../support/speed.js';

let h: Harness | undefined;
const workers = new DrainWorkers(inject('redisUrl'));

afterEach(async () => {
  workers.killAll();
  await h?.close();
});

const worker = (yaml: string, prefix: string) => workers.start(yaml, prefix);

const kill = (c: Parameters<DrainWorkers['kill']>[0]) => workers.kill(c);

const moved = async (h: Harness, id: number) => Object.values(await vmStates(h.deps, id)).filter((s) => s.state === 'moved').length;

// 1.5 s per migration, two at a time (15 s for the 20 VMs): a loaded machine that holds up the
// polls between kills still finds VMs left to move (at 300 ms all 20 could be gone by the third).
const MIGRATION_MS = 1500;

it('a drain killed twice still finishes, moving no VM twice', async () => {
  const yaml = drainLabYaml({ migrationMs: MIGRATION_MS });
  const prefix = uniquePrefix('resume2');
  h = await makeHarness({ yaml, prefix, workers: false });
  const names = await setHostVms(h.deps, 'hyp03', 20);
  const first = await worker(yaml, prefix);
  const op = await h.planned('drain hyp03');
  await h.run(`start ${op.id}`);
  await h.waitFor(async () => (await moved(h!, op.id)) >= 3, 'three VMs moved', 30_000);
  await kill(first);
  const second = await worker(yaml, prefix);
  const before = await moved(h, op.id);
  await h.waitFor(async () => (await moved(h!, op.id)) >= before + 3, 'three more VMs moved', 30_000);
  await kill(second);
  expect(await moved(h, op.id)).toBeLessThan(20);
  await worker(yaml, prefix);
  const done = await h.waitForOp(op.id, 60_000);
  expect(done.status, h.transcript()).toBe('succeeded');
  expect((await readLedger(h.rt, 'hyp03'))?.status).toBe('drained');
  const per = await migrationsPerVm(h.rt.redis, prefix);
  for (const n of names) expect(per.get(n), n).toBe(1);
}, bound(180_000));

it('a drain whose worker dies more often than the stall limit ends failed and reported, its host unlocked and its ledger kept', async () => {
  const yaml = drainLabYaml({ migrationMs: MIGRATION_MS });
  const prefix = uniquePrefix('resume3');
  h = await makeHarness({ yaml, prefix, workers: false });
  await setHostVms(h.deps, 'hyp03', 20);
  let w = await worker(yaml, prefix);
  const op = await h.planned('drain hyp03');
  await h.run(`start ${op.id}`);
  for (let i = 0; i < 3; i++) {
    const before = await moved(h, op.id);
    await h.waitFor(async () => (await moved(h!, op.id)) >= before + 2, 'two more VMs moved', 30_000);
    await kill(w);
    w = await worker(yaml, prefix);
  }
  const done = await h.waitForOp(op.id, 90_000);
  expect(done.status).toBe('failed');
  await h.waitFor(async () => h!.transcript().includes(`job ${op.id} stopped after`), 'the give-up sentence');
  await h.waitForText(/the ledger of hyp03 is kept: \W?restore hyp03\W? brings its VMs home/);
  expect((await readLedger(h.rt, 'hyp03'))?.opId).toBe(op.id);
  // Four worker starts and three stall recoveries, each bounded above: the backstop is their sum.
}, bound(240_000));
