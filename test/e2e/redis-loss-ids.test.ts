/**
 * Never reuse operation ids (issue 13, item 3), as found: Redis loses its data (it comes back
 * empty) and then every Ferry process restarts too, so no process remembers in memory which ids
 * it handed out. `ferry web` and `ferry worker` in their own processes, a private redis-server
 * restarted empty on the same port, Slack played by a stand-in. The next operation must not take
 * the id an old card still shows, and a click on an old card's button must be refused with a
 * sentence that says why, without touching whatever now has that id.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { drainLabYaml, setHostVms } from '../support/drain-support.js';
import { startWebAndWorker, writeConfig, type FerryProcess } from '../support/processes.js';
import { startSlackStandin, type SlackStandin, type StandinCall } from '../support/slack-standin.js';
import { freePort, buttonBody, postSigned, SIGNING_SECRET, slashBody } from '../support/slack.js';
import { DURABLE, startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';
import { bound } from '../support/speed.js';
import { eventually } from '../support/wait.js';

let redis: PrivateRedis | undefined;
let slack: SlackStandin | undefined;
const procs: FerryProcess[] = [];
let h: Harness | undefined;
let stateDir: string | undefined;

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await h?.close();
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
  await slack?.close();
  await redis?.close();
});

type Button = { action_id?: string; value?: string };
function buttons(c: StandinCall): Button[] {
  const blocks = (c.body.blocks as { type?: string; elements?: Button[] }[] | undefined) ?? [];
  return blocks.filter((b) => b.type === 'actions').flatMap((b) => b.elements ?? []);
}

it('after Redis lost its data and every process restarted: new ids stay above the old ones, and an old button is refused', async () => {
  redis = await startPrivateRedis(DURABLE);
  slack = await startSlackStandin();
  const port = await freePort();
  const prefix = uniquePrefix('loss-ids');
  const yaml = drainLabYaml({ migrationMs: 100 }).replace('operators: [alice, bob, carol, dave]', 'operators: [U0ALICE]');
  // In this process only to give the lab's hosts VMs to drain (before and after the loss).
  h = await makeHarness({ yaml, prefix, workers: false, redisUrl: redis.url });
  const env = {
    REDIS_URL: redis.url,
    FERRY_PREFIX: prefix,
    FERRY_CONFIG: writeConfig(yaml),
    FERRY_STATE_DIR: (stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-state-'))),
    SLACK_BOT_TOKEN: 'xoxb-test',
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_API_URL: slack.url,
    PORT: String(port),
  };
  let lastAck = '';
  const up = async (): Promise<void> => {
    const { web, worker, ready } = startWebAndWorker(env);
    procs.push(web, worker);
    await ready;
  };
  const startButton = (after: number) =>
    eventually(() => slack!.calls.slice(after).flatMap(buttons).find((b) => b.action_id === 'ferry:drain-start'), 'a drain card with its Start button', 60_000).catch((e: unknown) => {
      throw new Error(`${String(e)}\nSlack got:\n${lastAck}\n${slack!.calls.map((c) => `${c.method} ${String(c.body.text ?? '')}`).join('\n')}`);
    });
  const idOf = (b: Button): number => Number(/^\d+/.exec(b.value ?? '')?.[0]);

  await up();
  // Two operations before the loss, so the old card's id is not simply 1.
  expect((await postSigned(port, slashBody('find stale ports hyp01'))).status).toBe(200);
  let mark = slack.calls.length;
  await setHostVms(h.deps, 'hyp03', 2);
  const ack = await postSigned(port, slashBody('drain hyp03'));
  lastAck = ack.text;
  expect(ack.status, ack.text).toBe(200);
  const old = await startButton(mark);
  const oldId = idOf(old);
  expect(oldId).toBeGreaterThan(0);

  // Everything goes: both processes, and Redis comes back without its data.
  await Promise.all(procs.splice(0).map((p) => p.stop()));
  await redis.stop();
  await redis.start({ fresh: true });
  await up();

  // A typed command after the restart: its operation gets an id no old card shows.
  mark = slack.calls.length;
  // The lab lived in that Redis too: this process starts again as well, and seeds it afresh.
  await h.close();
  h = await makeHarness({ yaml, prefix, workers: false, redisUrl: redis.url });
  await setHostVms(h.deps, 'hyp05', 2);
  const ack5 = await postSigned(port, slashBody('drain hyp05'));
  lastAck = ack5.text;
  expect(ack5.status).toBe(200);
  const fresh = await startButton(mark);
  expect(idOf(fresh)).toBeGreaterThan(oldId);

  // The old card's Start button: refused, saying why, and the new drain is not started by it.
  mark = slack.calls.length;
  const click = await postSigned(port, buttonBody('ferry:drain-start', old.value ?? '', 'trig-old'));
  expect(click.status).toBe(200);
  const eph = await eventually(() => slack!.calls.slice(mark).find((c) => c.method === 'chat.postEphemeral'), 'the answer to the old click', 30_000);
  expect(String(eph.body.text)).toMatch(/^This button is from before Ferry's Redis lost its data \(found at \d{4}-\d\d-\d\d \d\d:\d\d UTC\); nothing was done\./);
  await new Promise((r) => setTimeout(r, 2000));
  const later = slack.calls.slice(mark).filter((c) => c !== eph);
  expect(later.map((c) => `${c.method} ${String(c.body.text ?? '')}`).filter((t) => /hyp05/.test(t))).toEqual([]);
}, bound(240_000));
