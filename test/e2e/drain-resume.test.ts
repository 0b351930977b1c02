/**
 * Resumable drain: the worker runs in a child process and is killed with SIGKILL mid-drain; a
 * new worker started later finishes it through BullMQ's stalled-job recovery. No VM migrates
 * twice, every VM ends on its planned target, the ledger is intact, the thread says it resumed
 * within 1 s (scaled) of the new worker picking the step up.
 */
import { afterEach, expect, it } from 'vitest';
import { inject } from 'vitest';
import { makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { DrainWorkers } from '../support/drain-worker-process.js';
import { readLedger } from '../../src/jobs/drain/ledger.js';
import { vmStates } from '../../src/jobs/drain/steps.js';
import { timeBound } from '../support/speed.js';
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
  const killedAt = Date.now();
  const movedAtKill = Object.values(await vmStates(h.deps, op.id)).filter((s) => s.state === 'moved').length;
  expect(movedAtKill).toBeLessThan(20);
  expect((await h.deps.ops.get(op.id))?.status).toBe('running');

  // Another worker, after the first is gone. Watched from now: when the thread hears of the resume.
  const resumeNote = `Resumed job ${op.id} after its worker stopped`;
  const noteAt = h.waitFor(async () => h!.transcript().includes(resumeNote) && Date.now(), 'the resume note', 60_000);
  // Awaited below; a note that never comes must fail there, not as an unhandled rejection first.
  noteAt.catch(() => undefined);
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
  // Said as soon as the step is picked up again (found: about 60 s of silence): measured from
  // when the new worker took the job (BullMQ's processedOn, set as it becomes active again).
  const exec = (await h.deps.queues.ops.getJobs(['completed', 'failed', 'active'])).find((j) => j.id?.startsWith(`op-${op.id}-exec-`));
  expect(exec?.attemptsStarted ?? 0, 'the exec step ran twice').toBeGreaterThan(1);
  const pickedUp = exec!.processedOn!;
  const saidAfter = (await noteAt) - pickedUp;
  console.log(`resume: the note came ${saidAfter} ms after the new worker picked the step up (${pickedUp - killedAt} ms after the kill)`);
  const prompt = timeBound(1000);
  expect(saidAfter, `the resume note right after the pick-up (${prompt.why})`).toBeLessThan(prompt.ms);
  await h.waitForText(/hyp03 drained in .*: 20 moved, 0 skipped, 0 failed/);
});
