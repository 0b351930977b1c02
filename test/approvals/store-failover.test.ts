/**
 * Approval state across a Redis Sentinel failover (a real primary, an AOF replica and three
 * redis-sentinel on loopback, test/support/sentinel-cluster.ts). The replica lags (its
 * replication stream held back), a request is created and another approved on the primary
 * alone, then the primary is killed: the replica it promotes never had them. Each write is
 * confirmed with WAIT before the caller hears of it, so neither call returns until the write is
 * on the new primary: no approval said in a thread and then forgotten, no removal claimed on an
 * approval Redis no longer has, and no request id handed out twice.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { LAB_DEFAULT_YAML } from '../../src/config/lab-default.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { silentLogger } from '../../src/log.js';
import { ApprovalStore } from '../../src/approvals/store.js';
import { decide, resolvePolicy, type DecideResult } from '../../src/approvals/policy.js';
import { planHash } from '../../src/approvals/plan-hash.js';
import { membership } from '../../src/core/permissions.js';
import { MASTER, onNode, replicaPortOf, startSentinelCluster, type SentinelCluster } from '../support/sentinel-cluster.js';
import { eventually } from '../support/wait.js';

const now = Date.UTC(2026, 10, 22, 14, 0);
const conv = { surface: 'console' as const, session: 's', user: 'alice' };
const plan = [{ host: 'hyp03', wwpn: 'C003FF6EDB4A0004', fabric: '100000C0DD00A0A0', hba: '5001438020035B00' }];
const prefix = `test-approval-failover-${process.pid}`;
let cluster: SentinelCluster;
let rt: Runtime;

beforeAll(async () => {
  cluster = await startSentinelCluster();
  const yaml = `${LAB_DEFAULT_YAML}approvals:\n  remove-ports:\n    approvals: 1\n    approvers: [dave]\n    expiry: 30m\n`;
  rt = createRuntime({ loaded: parseConfig(yaml, 'test'), redisUrl: `redis-sentinel://${cluster.sentinels}/${MASTER}`, log: silentLogger(), prefix, clock: { now: () => now } });
});

afterAll(async () => {
  await rt?.close();
  await cluster?.close();
});

const newRequest = (store: ApprovalStore) =>
  store.create({ action: 'remove-ports', requester: 'alice', plan, summary: 'remove 1 stale port on hyp03' }, resolvePolicy(rt.config, 'remove-ports'), { conv });

it('a request created and one approved while the replica lags are on the new primary before either call returns', async () => {
  const store = new ApprovalStore(rt);
  const first = await newRequest(store);
  await cluster.replicaInSync();
  const replicaPort = await replicaPortOf(cluster.firstPrimaryPort);
  const key = rt.key('approval', first.request.id);

  cluster.holdReplication();
  const settled: string[] = [];
  const approving = store
    .transition<typeof plan, DecideResult<typeof plan>>(first.request.id, (r) => {
      const d = decide(r, { user: 'dave', decision: 'approve', planHash: planHash(r.plan), now }, membership(rt.config));
      return { next: d.request ?? null, result: d };
    })
    .finally(() => settled.push('approve'));
  const creating = newRequest(store).finally(() => settled.push('create'));

  // Both writes are on the primary and not on its replica, and neither caller has heard back.
  await eventually(
    () => onNode(cluster.firstPrimaryPort, async (c) => (await c.hget(key, 'v')) === '1' && Number(await c.get(rt.key('approval', 'seq'))) === Number(first.request.id) + 1),
    'the approval and the new request on the primary',
  );
  expect(await onNode(replicaPort, (c) => c.hget(key, 'v'))).toBe('0');
  await new Promise((r) => setTimeout(r, 1500));
  expect(settled).toEqual([]);

  const { promoted } = await cluster.killPrimary();
  expect(await promoted).toBe(replicaPort);

  const approved = await approving;
  const created = await creating;
  expect(approved?.written).toBe(true);
  expect(approved?.result.refused).toBe(false);
  // What the callers were told is what the new primary holds.
  const onNew = await onNode(replicaPort, async (c) => ({
    approval: JSON.parse((await c.hget(key, 'json'))!) as { status: string },
    created: JSON.parse((await c.hget(rt.key('approval', created.request.id), 'json')) ?? 'null') as { summary: string } | null,
    seq: Number(await c.get(rt.key('approval', 'seq'))),
    pending: await c.zrange(rt.key('approvals', 'pending'), 0, -1),
  }));
  expect(onNew.approval.status).toBe('approved');
  expect(onNew.created?.summary).toBe('remove 1 stale port on hyp03');
  expect(onNew.pending).toContain(created.request.id);
  expect(onNew.pending).not.toContain(first.request.id);
  // The sequence is not behind the id it gave out: the next request gets a new id.
  expect(onNew.seq).toBeGreaterThanOrEqual(Number(created.request.id));
  const next = await newRequest(store);
  expect(Number(next.request.id)).toBeGreaterThan(Number(created.request.id));
  expect((await store.get(created.request.id))?.request.summary).toBe('remove 1 stale port on hyp03');
});
