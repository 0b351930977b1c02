/**
 * Redis away longer than a job's lock while a drain runs (issue 13, item 1): BullMQ's
 * stalled-job recovery starts a second run of the drain while the first is still alive, with
 * migrations in flight. Workers in their own processes, a private Redis stopped and started
 * again on the same port with its data (AOF). The run that lost its job must stop before it
 * acts: no VM moves twice, no migration collides, the drain ends succeeded.
 *
 * FERRY_TEST_OUTAGE_MS / FERRY_TEST_LOCK_MS / FERRY_TEST_STALLED_MS set the outage and the
 * workers' lock timings (defaults: 8 s away, 4 s lock: long enough that a loaded machine does not lose locks by itself); with 75000 / 60000 / 15000 it is the
 * outage of the issue at production timings.
 */
import { afterEach, expect, it } from 'vitest';
import { makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { DURABLE, startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';
import { DrainWorkers } from '../support/drain-worker-process.js';
import { readLedger } from '../../src/jobs/drain/ledger.js';
import { vmStates } from '../../src/jobs/drain/steps.js';
import { drainLabYaml, migrationsPerVm, setHostVms, whereIs } from '../support/drain-support.js';
import { bound } from '../support/speed.js';

const OUTAGE_MS = Number(process.env.FERRY_TEST_OUTAGE_MS ?? 8000);
const LOCK_MS = Number(process.env.FERRY_TEST_LOCK_MS ?? 4000);
const STALLED_MS = Number(process.env.FERRY_TEST_STALLED_MS ?? 1000);
const CLUSTER = ['hyp01', 'hyp02', 'hyp03', 'hyp04', 'hyp05', 'hyp06'];

let h: Harness | undefined;
let redis: PrivateRedis | undefined;
let workers: DrainWorkers | undefined;

afterEach(async () => {
  workers?.killAll();
  await h?.close();
  await redis?.close();
});

it(`a drain whose Redis is away ${OUTAGE_MS} ms (longer than the job lock) runs once: no VM moves twice`, async () => {
  expect(OUTAGE_MS).toBeGreaterThan(LOCK_MS);
  redis = await startPrivateRedis(DURABLE);
  workers = new DrainWorkers(redis.url);
  // Migrations long enough that the outage starts with some in flight.
  const yaml = drainLabYaml({ migrationMs: 1500, concurrency: 2 });
  const prefix = uniquePrefix('fence');
  h = await makeHarness({ yaml, prefix, workers: false, redisUrl: redis.url });
  const names = await setHostVms(h.deps, 'hyp03', 10);
  const env = { FERRY_TEST_LOCK_MS: String(LOCK_MS), FERRY_TEST_STALLED_MS: String(STALLED_MS) };
  await workers.start(yaml, prefix, env);
  await workers.start(yaml, prefix, env);

  const op = await h.planned('drain hyp03');
  await h.run(`start ${op.id}`);
  const states = async () => Object.values(await vmStates(h!.deps, op.id));
  await h.waitFor(async () => (await states()).filter((s) => s.state === 'moved').length >= 2 && (await states()).some((s) => s.state === 'moving'), 'two VMs moved and one in flight', 60_000);

  await redis.stop();
  await new Promise((r) => setTimeout(r, OUTAGE_MS));
  await redis.start();

  const done = await h.waitForOp(op.id, 120_000 + OUTAGE_MS);
  // The outage really made a second run (else this test proves nothing).
  expect(Number(await h.rt.redis.get(h.rt.key('op', op.id, 'runs', 0))), 'runs of the exec step').toBeGreaterThanOrEqual(2);
  const per = await migrationsPerVm(h.rt.redis, prefix);
  const twice = names.filter((n) => (per.get(n) ?? 0) > 1);
  expect(twice, `VMs moved twice\n${h.transcript()}`).toEqual([]);
  expect(done.status, h.transcript()).toBe('succeeded');
  expect(h.transcript()).not.toMatch(/during the migration|could not move/);
  const where = await whereIs(h.rt, CLUSTER);
  for (const n of names) expect(where.get(n), n).not.toBe('hyp03');
  expect((await readLedger(h.rt, 'hyp03'))?.status).toBe('drained');
  // One summary: the run that lost its job said nothing more.
  expect(h.transcript().match(/hyp03 drained in/g)?.length).toBe(1);
}, bound(240_000) + 2 * Number(process.env.FERRY_TEST_OUTAGE_MS ?? 8000));
