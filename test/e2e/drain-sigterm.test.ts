/**
 * A deploy mid-drain: SIGTERM to a real worker process (src/main.ts worker) while a migration
 * runs. It stops taking jobs, waits SHUTDOWN_GRACE_MS for the step, then says in the thread that
 * Ferry is restarting and the operation will resume, hands the job over and exits 0 within the
 * bound. Another worker resumes the drain; no VM moves twice.
 */
import { afterEach, expect, it } from 'vitest';
import { inject } from 'vitest';
import { makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { DrainWorkers } from '../support/drain-worker-process.js';
import { startFerry, writeConfig, type FerryProcess } from '../support/processes.js';
import { vmStates } from '../../src/jobs/drain/steps.js';
import { drainLabYaml, migrationsPerVm, setHostVms, whereIs } from '../support/drain-support.js';
import { readLedger } from '../../src/jobs/drain/ledger.js';
import { bound } from '../support/speed.js';

const CLUSTER = ['hyp01', 'hyp02', 'hyp03', 'hyp04', 'hyp05', 'hyp06'];
const GRACE_MS = 1000;
let h: Harness | undefined;
let first: FerryProcess | undefined;
const deployed: FerryProcess[] = [];
const workers = new DrainWorkers(inject('redisUrl'));

afterEach(async () => {
  await first?.stop('SIGKILL');
  await Promise.all(deployed.splice(0).map((w) => w.stop('SIGKILL')));
  workers.killAll();
  await h?.close();
});

it('SIGTERM mid-migration: exit 0 within the bound, the thread says it will resume, another worker finishes, nothing moves twice', async () => {
  // Each migration outlasts the grace period, so SIGTERM always lands mid-migration.
  const yaml = drainLabYaml({ migrationMs: 2500, concurrency: 1 });
  const prefix = uniquePrefix('sigterm');
  h = await makeHarness({ yaml, prefix, workers: false });
  const names = await setHostVms(h.deps, 'hyp03', 4);
  first = startFerry('worker', { REDIS_URL: inject('redisUrl'), FERRY_PREFIX: prefix, FERRY_CONFIG: writeConfig(yaml), SHUTDOWN_GRACE_MS: String(GRACE_MS) });
  await first.waitForLine(/workers ready/, 60_000);

  const op = await h.planned('drain hyp03');
  await h.run(`start ${op.id}`);
  await h.waitFor(async () => Object.values(await vmStates(h!.deps, op.id)).some((s) => s.state === 'moving'), 'a migration in flight', 30_000);

  const t0 = Date.now();
  const code = await first.stop('SIGTERM');
  const tookMs = Date.now() - t0;
  expect(code).toBe(0);
  // Grace, the thread notice (bounded at 3 s) and closing connections.
  expect(tookMs).toBeLessThan(GRACE_MS + bound(8000));
  expect(first.output()).toMatch(/handing them over/);
  await h.waitFor(async () => h!.transcript().includes(`Ferry is restarting: the worker running drain hyp03 (operation ${op.id}) is stopping. The operation will resume on another worker`), 'the restart notice in the thread');
  expect((await h.deps.ops.get(op.id))?.status).toBe('running');

  await workers.start(yaml, prefix);
  const done = await h.waitForOp(op.id, 90_000);
  expect(done.status).toBe('succeeded');
  const ledger = await readLedger(h.rt, 'hyp03');
  const where = await whereIs(h.rt, CLUSTER);
  for (const v of ledger!.vms) expect(where.get(v.name)).toBe(v.target);
  const per = await migrationsPerVm(h.rt.redis, prefix);
  for (const n of names) expect(per.get(n), n).toBe(1);
}, bound(240_000));

it('three deploys during one drain: each worker hands over mid-migration, the drain does not give up, nothing moves twice', async () => {
  const yaml = drainLabYaml({ migrationMs: 2500, concurrency: 1 });
  const prefix = uniquePrefix('sigterm3');
  h = await makeHarness({ yaml, prefix, workers: false });
  const names = await setHostVms(h.deps, 'hyp03', 8);
  const env = { REDIS_URL: inject('redisUrl'), FERRY_PREFIX: prefix, FERRY_CONFIG: writeConfig(yaml), SHUTDOWN_GRACE_MS: String(GRACE_MS) };
  const deploy1 = startFerry('worker', env);
  deployed.push(deploy1);
  await deploy1.waitForLine(/workers ready/, 60_000);
  const op = await h.planned('drain hyp03');
  await h.run(`start ${op.id}`);
  const moved = async () => Object.values(await vmStates(h!.deps, op.id)).filter((s) => s.state === 'moved').length;
  for (let deploy = 1; deploy <= 3; deploy++) {
    const worker = deploy === 1 ? deploy1 : startFerry('worker', env);
    if (deploy > 1) {
      deployed.push(worker);
      await worker.waitForLine(/workers ready/, 60_000);
    }
    // This worker has the drain: it moved a VM since the last deploy, and the next one is on its way.
    const before = await moved();
    await h.waitFor(async () => (await moved()) > before && Object.values(await vmStates(h!.deps, op.id)).some((s) => s.state === 'moving'), `deploy ${deploy}: the worker moving VMs`, 60_000);
    expect(await worker.stop('SIGTERM'), `deploy ${deploy}`).toBe(0);
    expect(worker.output()).toMatch(/handing them over/);
    expect((await h.deps.ops.get(op.id))?.status, `deploy ${deploy}`).toBe('running');
  }
  expect(await moved()).toBeLessThan(names.length);
  await workers.start(yaml, prefix);
  const done = await h.waitForOp(op.id, 90_000);
  expect(done.status, done.summary).toBe('succeeded');
  expect(done.summary).toMatch(/^8 moved, 0 skipped, 0 failed/);
  const per = await migrationsPerVm(h.rt.redis, prefix);
  for (const n of names) expect(per.get(n), n).toBe(1);
}, bound(300_000));
