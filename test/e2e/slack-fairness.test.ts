/**
 * A channel flooded by other operations' output (issue 13, item 4): 10 cards refreshed over and
 * over and a stream of thread replies in the same channel, through the outbox and a stand-in Web
 * API that enforces Slack's rate limits. An operator's typed command there still gets its answer
 * (the card, a top-level post) within Slack's 3 s: first posts and ephemerals go before thread
 * replies and those before card refreshes, and nobody books the channel's budget ahead.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { SIGNING_SECRET, freePort, postSigned, slashBody } from '../support/slack.js';
import { startSlackStandin, type SlackStandin } from '../support/slack-standin.js';
import { createSlackApp } from '../../src/bot/slack/app.js';
import { message } from '../../src/chat/messages.js';
import type { Conversation, MessageRef } from '../../src/chat/conversation.js';
import { bound } from '../support/speed.js';

let h: Harness;
let app: ReturnType<typeof createSlackApp>;
let port: number;
let slack: SlackStandin;

beforeAll(async () => {
  slack = await startSlackStandin();
  const env = { SLACK_BOT_TOKEN: 'xoxb-test', SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_API_URL: slack.url };
  h = await makeHarness({ env });
  port = await freePort();
  app = createSlackApp(h.deps, { botToken: env.SLACK_BOT_TOKEN, signingSecret: SIGNING_SECRET, port, slackApiUrl: slack.url });
  await app.start(port);
});

afterAll(async () => {
  await app.stop();
  await h.close();
  await slack.close();
});

it("an operator's command in a channel flooded by other operations' card refreshes and replies is answered within 3 s", async () => {
  const channel = 'C0BUSY';
  const others: Conversation = { surface: 'slack', channel, user: 'U0BOT' };
  // Ten other operations' cards, in Slack before the flood starts.
  const cards: MessageRef[] = [];
  for (let i = 0; i < 10; i++) cards.push(await h.deps.outbox.post(others, message(`operation ${i}: starting`)) as MessageRef);
  await h.waitFor(async () => (await Promise.all(cards.map((c) => h.deps.slackOutbox!.resolve(c)))).every(Boolean), 'the 10 cards in Slack', 120_000);

  let flooding = true;
  let n = 0;
  const flood = (async () => {
    while (flooding) {
      n++;
      const card = cards[n % cards.length]!;
      await h.deps.outbox.update(others, card, message(`operation ${n % cards.length}: step ${n}`));
      if (n % 4 === 0) await h.deps.outbox.post({ ...others, threadTs: card.ts }, message(`operation ${n % cards.length}: moved vm-${n}`));
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  try {
    // Let the flood build a backlog well past what Slack's limits let through in a few seconds.
    await h.waitFor(async () => ((await h.deps.slackOutbox!.backlog()).messages > 30 ? true : undefined), 'a backlog of replies', 30_000);
    const t0 = Date.now();
    const res = await postSigned(port, slashBody('find stale ports hyp01..hyp02', { channel, user: 'U0ALICE' }));
    expect(res.status).toBe(200);
    const answer = await h.waitFor(
      async () => slack.calls.find((c) => c.at >= t0 && c.status === 200 && c.method === 'chat.postMessage' && !c.body.thread_ts && String(c.body.text).includes('hyp01..hyp02')),
      "the operator's card",
      30_000,
    );
    expect(answer.at - t0).toBeLessThan(bound(3000));
    // The flood was still waiting behind it: replies and refreshes queued before the command went after it.
    expect((await h.deps.slackOutbox!.backlog()).messages).toBeGreaterThan(0);
  } finally {
    flooding = false;
    await flood;
  }
});
