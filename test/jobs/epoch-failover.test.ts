/**
 * The epoch key (src/jobs/epoch.ts) across a Redis Sentinel failover (a real primary, an AOF
 * replica and three redis-sentinel on loopback, test/support/sentinel-cluster.ts). Ferry writes
 * its epoch at first start while the replica lags (its replication stream held back), then the
 * primary is killed: the replica it promotes never had the epoch. Confirmed with WAIT, the first
 * check does not return until the new primary has it, so the next check does not take the new
 * primary for a Redis that lost its data (a false "lost its data", ids raised by 1,000).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { LAB_DEFAULT_YAML } from '../../src/config/lab-default.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { silentLogger } from '../../src/log.js';
import { checkEpoch } from '../../src/jobs/epoch.js';
import { MASTER, onNode, startSentinelCluster, writeAcrossKill, type SentinelCluster } from '../support/sentinel-cluster.js';

let cluster: SentinelCluster;
let rt: Runtime;

beforeAll(async () => {
  cluster = await startSentinelCluster();
  rt = createRuntime({ loaded: parseConfig(LAB_DEFAULT_YAML, 'test'), redisUrl: `redis-sentinel://${cluster.sentinels}/${MASTER}`, log: silentLogger(), prefix: `test-epoch-failover-${process.pid}` });
});

afterAll(async () => {
  await rt?.close();
  await cluster?.close();
});

it("the first epoch, written while the replica lags, is on the new primary before the check returns; the next check finds no loss", async () => {
  const key = rt.key('epoch');
  const seen = await writeAcrossKill(cluster, 'the epoch', () => checkEpoch(rt), async (c) => (await c.exists(key)) === 1);
  expect(seen.onReplicaWhileHeld).toBe(false);
  expect(seen.returnedBeforeKill, 'the epoch check returned before any replica had the epoch').toBe(false);
  expect(seen.promoted).toBe(seen.replicaPort);
  expect(seen.result.lost).toBe(false);
  expect(await onNode(seen.replicaPort, (c) => c.get(key))).toBe(seen.result.epoch);
  const again = await checkEpoch(rt);
  expect(again).toEqual({ lost: false, epoch: seen.result.epoch });
});
