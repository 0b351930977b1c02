/**
 * Resumable drain: the worker runs in a child process and is killed with SIGKILL mid-drain; a
 * new worker started later finishes it through BullMQ's stalled-job recovery. No VM migrates
 * twice, every VM ends on its planned target, the ledger is intact, the thread says it resumed.
 */
import { afterEach, expect, it } from 'vitest';
import { inject } from 'vitest';
import { makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { DrainWorkers } from '../support/drain-worker-process.js';
import { readLedger } from '../../src/jobs/drain/ledger.js';
import { vmStates } from '../../src/jobs/drain/steps.js';
import { drainLabYaml, migrationsPerVm, setHostVms, whereIs } from '../support/drain-support.js';

const CLUSTER = ['hyp01', 'hyp02', 'hyp03', 'hyp04', 'hyp05', 'hyp06'];
let h: Harness | undefined;
const workers = new DrainWorkers(inject('redisUrl'));

afterEach(async () => {
  workers.killAll();
  await h?.close();
});

const worker = (yaml: string, prefix: string) => workers.start(yaml, prefix);

it('a drain survives SIGKILL of its worker and finishes on a new one, moving no VM twice', async () => {
  // 1.5 s per migration, two at a time: 15 s for the 20 VMs, so a poll that a loaded machine
  // holds up for seconds still kills the worker with VMs left to move.
  const yaml = drainLabYaml({ migrationMs: 1500 });
  const prefix = uniquePrefix('resume');
  h = await makeHarness({ yaml, prefix, workers: false });
  const names = await setHostVms(h.deps, 'hyp03', 20);
  const first = await worker(yaml, prefix);

  const op = await h.planned('drain hyp03');
  await h.run(`start ${op.id}`);
  // Kill it with some VMs moved and others in flight.
  await h.waitFor(async () => Object.values(await vmStates(h!.deps, op.id)).filter((s) => s.state === 'moved').length >= 5, 'five VMs moved', 30_000);
  first.kill('SIGKILL');
  await new Promise((r) => first.once('exit', r));
  const movedAtKill = Object.values(await vmStates(h.deps, op.id)).filter((s) => s.state === 'moved').length;
  expect(movedAtKill).toBeLessThan(20);
  expect((await h.deps.ops.get(op.id))?.status).toBe('running');

  // Another worker, after the first is gone.
  await worker(yaml, prefix);
  const done = await h.waitForOp(op.id, 60_000);
  expect(done.status).toBe('succeeded');

  const ledger = await readLedger(h.rt, 'hyp03');
  expect(ledger?.opId).toBe(op.id);
  expect(ledger?.status).toBe('drained');
  expect(ledger?.vms.map((v) => v.name).sort()).toEqual([...names].sort());
  const where = await whereIs(h.rt, CLUSTER);
  for (const v of ledger!.vms) expect(where.get(v.name)).toBe(v.target);
  const per = await migrationsPerVm(h.rt.redis, prefix);
  for (const n of names) expect(per.get(n), n).toBe(1);
  await h.waitFor(async () => h!.transcript().includes(`Resumed job ${op.id} after its worker stopped`), 'the resume note');
  await h.waitForText(/hyp03 drained in .*: 20 moved, 0 skipped, 0 failed/);
});
