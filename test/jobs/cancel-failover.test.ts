/**
 * A cancel across a Redis Sentinel failover (a real primary, an AOF replica and three
 * redis-sentinel on loopback, test/support/sentinel-cluster.ts). The replica lags (its
 * replication stream held back), a user cancels a running job, then the primary is killed: the
 * replica it promotes never had the flag. The flag is confirmed with WAIT, so the cancel does not
 * return (and the user is not told "Cancelling job …") until the new primary has it: a drain
 * never goes on moving VMs after its cancel was said.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { LAB_DEFAULT_YAML } from '../../src/config/lab-default.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { silentLogger } from '../../src/log.js';
import { Operations } from '../../src/jobs/operations.js';
import { MASTER, onNode, startSentinelCluster, writeAcrossKill, type SentinelCluster } from '../support/sentinel-cluster.js';

const conv = { surface: 'console' as const, session: 's', user: 'alice' };
let cluster: SentinelCluster;
let rt: Runtime;

beforeAll(async () => {
  cluster = await startSentinelCluster();
  rt = createRuntime({ loaded: parseConfig(LAB_DEFAULT_YAML, 'test'), redisUrl: `redis-sentinel://${cluster.sentinels}/${MASTER}`, log: silentLogger(), prefix: `test-cancel-failover-${process.pid}` });
});

afterAll(async () => {
  await rt?.close();
  await cluster?.close();
});

it('a cancel asked while the replica lags is on the new primary before the call returns', async () => {
  const ops = new Operations(rt);
  const op = await ops.create({ kind: 'drain', title: 'drain hyp05', requester: 'alice', conv, hosts: ['hyp05'], params: {} });
  await ops.patch(op.id, { status: 'running' });
  const flag = rt.key('op', op.id, 'cancel');

  const seen = await writeAcrossKill(cluster, 'the cancel flag', () => ops.requestCancel(op.id, 'bob'), async (c) => (await c.get(flag)) === 'bob');
  expect(seen.onReplicaWhileHeld).toBe(false);
  expect(seen.returnedBeforeKill, 'the cancel returned before any replica had it').toBe(false);
  expect(seen.promoted).toBe(seen.replicaPort);
  // What the user was told (the call returned) is what the new primary holds.
  expect(await onNode(seen.replicaPort, (c) => c.get(flag))).toBe('bob');
  expect(await ops.cancelRequested(op.id)).toBe('bob');
});
