/**
 * A long sweep report: the summary shows the first rows, and the full table reaches Slack as a
 * CSV streamed from Redis (written a page at a time while the results are read, uploaded a page
 * at a time), never built whole in a Ferry process. Signed slash command to the real receiver,
 * real Redis and BullMQ, the Web API played by the local stand-in.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { SIGNING_SECRET, freePort, postSigned, slashBody } from '../support/slack.js';
import { startSlackStandin, type SlackStandin } from '../support/slack-standin.js';
import { createSlackApp } from '../../src/bot/slack/app.js';
import { findStalePorts } from '../../src/core/stale-ports.js';

const YAML = `
lab:
  seed: 11
  latencyMs: 0
limits:
  selectorMax: 400
clusters:
  wide:
    adapter: lab
    hosts: ["w[001-400]"]
groups:
  operators: [U0ALICE]
`;

describe('sweep report: the full table streamed as a file', () => {
  let h: Harness;
  let app: ReturnType<typeof createSlackApp>;
  let port: number;
  let slack: SlackStandin;

  beforeAll(async () => {
    slack = await startSlackStandin({ keepUploads: true });
    const env = { SLACK_BOT_TOKEN: 'xoxb-test', SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_API_URL: slack.url };
    h = await makeHarness({ env, yaml: YAML });
    port = await freePort();
    app = createSlackApp(h.deps, { botToken: env.SLACK_BOT_TOKEN, signingSecret: SIGNING_SECRET, port, slackApiUrl: slack.url });
    await app.start(port);
  });

  afterAll(async () => {
    await app.stop();
    await h.close();
    await slack.close();
  });

  it('shows 60 rows, and attaches every stale port in host order as stale-ports.csv in the card thread', async () => {
    const res = await postSigned(port, slashBody('find stale ports w001..w400', { user: 'U0ALICE', channel: 'C0WIDE', responseUrl: `${slack.responseUrl}w` }));
    expect(res.status).toBe(200);
    const complete = await h.waitFor(async () => slack.calls.find((c) => c.method === 'files.completeUploadExternal' && c.body.channel_id === 'C0WIDE'), 'the file upload to complete');
    const op = (await h.deps.ops.recent(1))[0]!;

    const expected: string[] = ['Host,WWPN,Fabric,HBA'];
    for (const host of op.hosts) {
      for (const p of findStalePorts(await h.rt.adapters.forHost(host).npivInventory(host))) expected.push([p.host, p.wwpn, p.fabric, p.hbaWwpn].join(','));
    }
    const stale = expected.length - 1;
    expect(stale).toBeGreaterThan(60);

    // The lines were written to Redis (the job never held the whole table) and streamed from there.
    expect(await h.rt.redis.lrange(h.rt.key('op', op.id, 'csv', 'stale'), 0, -1)).toEqual(expected);
    const upload = slack.calls.find((c) => c.method === 'upload' && c.body.id === (complete.body.files as { id: string }[])[0]!.id);
    expect(upload?.body.content).toBe(`${expected.join('\n')}\n`);
    expect(upload?.bytes).toBe(Buffer.byteLength(`${expected.join('\n')}\n`));

    const summary = slack.calls.find((c) => c.method === 'chat.postMessage' && c.body.channel === 'C0WIDE' && String(c.body.text).includes('(of 400 swept)'));
    expect(String(summary?.body.text)).toContain(`${stale} stale ports on`);
    const shown = JSON.stringify(summary?.body.blocks);
    expect(shown).toContain(`Showing 60 of ${stale} rows; the full table is attached as stale-ports.csv.`);
    // In the card's thread, like the summary.
    const done = await h.deps.ops.get(op.id);
    // Ferry knows the card by its outbox ref; Slack by the ts the outbox got for it.
    const cardTs = (await h.deps.slackOutbox!.resolve(done!.cardRef!))?.ts;
    expect(cardTs).toBeDefined();
    expect(complete.body.thread_ts).toBe(cardTs);
    expect(summary?.body.thread_ts).toBe(cardTs);
    expect(slack.rateLimited()).toEqual([]);
  });
});
