/**
 * Redis that comes back empty mid-drain (issue 13, item 3): AOF off or a failover to an empty
 * replica. As found: the worker in its own process, a private Redis stopped and started again
 * on the same port without its data. The worker must not crash, the drain's thread must hear
 * what happened, and a new operation must not take an id the old card's buttons carry.
 */
import { afterEach, expect, it } from 'vitest';
import { makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { DURABLE, startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';
import { DrainWorkers } from '../support/drain-worker-process.js';
import { vmStates } from '../../src/jobs/drain/steps.js';
import { drainLabYaml, setHostVms } from '../support/drain-support.js';
import { bound } from '../support/speed.js';

let h: Harness | undefined;
let redis: PrivateRedis | undefined;
let workers: DrainWorkers | undefined;

afterEach(async () => {
  workers?.killAll();
  await h?.close();
  await redis?.close();
});

it('a drain whose Redis comes back empty: the thread is told, the worker lives on, operation ids are not reused', async () => {
  redis = await startPrivateRedis(DURABLE);
  workers = new DrainWorkers(redis.url);
  const yaml = drainLabYaml({ migrationMs: 1000, concurrency: 2 });
  const prefix = uniquePrefix('loss');
  h = await makeHarness({ yaml, prefix, workers: false, redisUrl: redis.url });
  await setHostVms(h.deps, 'hyp03', 10);
  const worker = await workers.start(yaml, prefix, { FERRY_EPOCH_CHECK_MS: '300' });

  const op = await h.planned('drain hyp03');
  await h.run(`start ${op.id}`);
  await h.waitFor(async () => Object.values(await vmStates(h!.deps, op.id)).filter((s) => s.state === 'moved').length >= 2, 'two VMs moved', 60_000);

  await redis.stop();
  await redis.start({ fresh: true });

  await h.waitFor(async () => h!.transcript().includes(`Ferry's Redis lost its data: job ${op.id} (drain hyp03)`), 'the thread to hear that the data is gone', 90_000).catch((e: unknown) => {
    throw new Error(`${String(e)}\n${workers!.output()}`);
  });
  await h.waitForText('Check hyp03 by hand');
  expect(worker.exitCode).toBeNull();
  expect(worker.signalCode).toBeNull();

  // A new operation does not take the old card's id (the lab's hosts vanished with the data too,
  // so the operation is created the way every command handler creates one).
  const next = await h.deps.ops.create({ kind: 'drain', title: 'drain hyp05', requester: 'alice', conv: op.conv, hosts: ['hyp05'], params: {} });
  expect(next.id).toBeGreaterThan(op.id);
  expect(worker.exitCode).toBeNull();

  // restore hyp03 cannot find the ledger that vanished with the data, and says why it may be missing.
  await h.run('restore hyp03');
  const said = await h.waitFor(async () => h!.ephemerals('alice').find((t) => t.includes('hyp03 has no drain ledger')) ?? h!.transcript().split('\n').find((t) => t.includes('hyp03 has no drain ledger')), 'the restore answer');
  expect(said).toMatch(/Ferry's Redis lost its data \(found at .+ UTC\); a drain of hyp03 from before then is no longer known/);
}, bound(180_000));
