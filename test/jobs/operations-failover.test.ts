/**
 * Operation records across a Redis Sentinel failover (a real primary, an AOF replica and three
 * redis-sentinel on loopback, test/support/sentinel-cluster.ts). The replica lags (its
 * replication stream held back); an operation is finished and another created on the primary
 * alone, then the primary is killed: the replica it promotes never had them. Both writes are
 * confirmed with WAIT, so neither call returns until the new primary has them: no operation
 * shown running after its summary was said, no job left without its record, no id given twice.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { LAB_DEFAULT_YAML } from '../../src/config/lab-default.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { silentLogger } from '../../src/log.js';
import { Operations } from '../../src/jobs/operations.js';
import { MASTER, onNode, replicaPortOf, startSentinelCluster, type SentinelCluster } from '../support/sentinel-cluster.js';
import { eventually } from '../support/wait.js';

const conv = { surface: 'console' as const, session: 's', user: 'alice' };
let cluster: SentinelCluster;
let rt: Runtime;

beforeAll(async () => {
  cluster = await startSentinelCluster();
  rt = createRuntime({ loaded: parseConfig(LAB_DEFAULT_YAML, 'test'), redisUrl: `redis-sentinel://${cluster.sentinels}/${MASTER}`, log: silentLogger(), prefix: `test-ops-failover-${process.pid}` });
});

afterAll(async () => {
  await rt?.close();
  await cluster?.close();
});

it('an operation finished and one created while the replica lags are on the new primary before either call returns', async () => {
  const ops = new Operations(rt);
  const newOp = (host: string) => ops.create({ kind: 'drain', title: `drain ${host}`, requester: 'alice', conv, hosts: [host], params: {} });
  const first = await newOp('hyp05');
  await ops.patch(first.id, { status: 'running' });
  await cluster.replicaInSync();
  const replicaPort = await replicaPortOf(cluster.firstPrimaryPort);
  const key = rt.key('op', first.id);
  const statusOn = async (port: number, k = key) => onNode(port, async (c) => (JSON.parse((await c.hget(k, 'json')) ?? 'null') as { status: string } | null)?.status);

  cluster.holdReplication();
  const settled: string[] = [];
  const finishing = ops.patch(first.id, { status: 'succeeded', summary: '3 moved' }).finally(() => settled.push('patch'));
  const creating = newOp('hyp06').finally(() => settled.push('create'));

  await eventually(async () => (await statusOn(cluster.firstPrimaryPort)) === 'succeeded' && Number(await onNode(cluster.firstPrimaryPort, (c) => c.get(rt.key('op', 'seq')))) === first.id + 1, 'the finish and the new operation on the primary');
  expect(await statusOn(replicaPort)).toBe('running');
  await new Promise((r) => setTimeout(r, 1500));
  expect(settled).toEqual([]);

  const { promoted } = await cluster.killPrimary();
  expect(await promoted).toBe(replicaPort);
  const finished = await finishing;
  const created = await creating;
  expect(finished.status).toBe('succeeded');
  expect(await statusOn(replicaPort)).toBe('succeeded');
  expect(await statusOn(replicaPort, rt.key('op', created.id))).toBe('queued');
  const onNew = await onNode(replicaPort, async (c) => ({ active: await c.smembers(rt.key('ops', 'active')), seq: Number(await c.get(rt.key('op', 'seq'))) }));
  expect(onNew.active).toContain(String(created.id));
  expect(onNew.active).not.toContain(String(first.id));
  expect(onNew.seq).toBeGreaterThanOrEqual(created.id);
  expect((await newOp('hyp07')).id).toBeGreaterThan(created.id);
});
