/**
 * The Slack outbox (src/bot/slack/outbox.ts) across a Redis Sentinel failover (a real primary,
 * an AOF replica and three redis-sentinel on loopback, test/support/sentinel-cluster.ts). A
 * message is queued (a drain's summary in its thread) or a card's last state is set while the
 * replica lags (its replication stream held back), then the primary is killed: the replica it
 * promotes never had them. Both are confirmed with WAIT, so neither call returns until the new
 * primary has them: no final message that is never shown, no card left showing a running job.
 */
import { afterEach, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { LAB_DEFAULT_YAML } from '../../src/config/lab-default.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { silentLogger } from '../../src/log.js';
import { SlackOutbox } from '../../src/bot/slack/outbox.js';
import { message } from '../../src/chat/messages.js';
import { MASTER, onNode, startSentinelCluster, writeAcrossKill, type SentinelCluster } from '../support/sentinel-cluster.js';

const conv = { surface: 'slack' as const, channel: 'C0OPS', threadTs: '1700000000.000100', user: 'U0ALICE' };
let cluster: SentinelCluster | undefined;
let rt: Runtime | undefined;

async function start(name: string): Promise<{ cluster: SentinelCluster; rt: Runtime; outbox: SlackOutbox }> {
  cluster = await startSentinelCluster();
  rt = createRuntime({ loaded: parseConfig(LAB_DEFAULT_YAML, 'test'), redisUrl: `redis-sentinel://${cluster.sentinels}/${MASTER}`, log: silentLogger(), prefix: `test-outbox-failover-${name}-${process.pid}` });
  return { cluster, rt, outbox: new SlackOutbox(rt.redis, rt.prefix) };
}

afterEach(async () => {
  await rt?.close();
  await cluster?.close();
  rt = cluster = undefined;
});

it('a message queued while the replica lags is on the new primary, once, before the call returns', async () => {
  const { cluster, rt, outbox } = await start('post');
  const lane = `${rt.prefix}:outbox:lane:p:${conv.channel}:${conv.threadTs}`;
  const summary = 'drain hyp03 finished: 20 moved, 0 skipped, 0 failed';
  const seen = await writeAcrossKill(cluster, 'the queued message', () => outbox.post(conv, message(summary)), async (c) => (await c.llen(lane)) > 0);
  expect(seen.onReplicaWhileHeld).toBe(false);
  expect(seen.returnedBeforeKill, 'the post returned before any replica had it').toBe(false);
  expect(seen.promoted).toBe(seen.replicaPort);
  // The ref the caller got names the message the new primary will deliver, queued once.
  const onNew = await onNode(seen.replicaPort, async (c) => ({ lane: await c.lrange(lane, 0, -1), body: await c.hget(`${rt.prefix}:outbox:m:${seen.result.ts.slice(1)}`, 'b') }));
  expect(onNew.lane).toEqual([seen.result.ts.slice(1)]);
  expect(JSON.parse(onNew.body ?? '{}')).toMatchObject({ text: summary });
});

it("a card's last state set while the replica lags is on the new primary before the call returns", async () => {
  const { cluster, rt, outbox } = await start('update');
  const card = { channel: conv.channel, ts: '1700000000.000200' };
  const slot = `${rt.prefix}:outbox:u:${card.channel}:${card.ts}`;
  const seen = await writeAcrossKill(cluster, "the card's last state", () => outbox.update(conv, card, message('job 41 · drain hyp03 · succeeded')), async (c) => (await c.exists(slot)) === 1);
  expect(seen.onReplicaWhileHeld).toBe(false);
  expect(seen.returnedBeforeKill, 'the card update returned before any replica had it').toBe(false);
  expect(seen.promoted).toBe(seen.replicaPort);
  const onNew = await onNode(seen.replicaPort, async (c) => ({ body: await c.hget(slot, 'b'), due: await c.zscore(`${rt.prefix}:outbox:ready:lo`, `u:${card.channel}:${card.ts}`) }));
  expect(JSON.parse(onNew.body ?? '{}')).toMatchObject({ text: 'job 41 · drain hyp03 · succeeded' });
  expect(onNew.due).not.toBeNull();
});
