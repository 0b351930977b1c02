/**
 * One user floods a channel with commands (issue 13, item 4), through Ferry's real HTTP
 * receiver with correctly signed requests and a stand-in Web API: the flood is refused with
 * one sentence, once; the rest cost nothing (no Slack call); the operator's command is not
 * refused. Fair sharing of the channel's output once allowed: test/e2e/slack-fairness.test.ts.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Harness } from '../support/harness.js';
import { mockSlackApi, postSigned, slashBody } from '../support/slack.js';
import { startSlackFerry, type SlackFerry } from '../support/slack-receiver.js';
import { pMap } from '../../src/core/pmap.js';
import { USER_COMMANDS_MAX } from '../../src/bot/rate-limit.js';
import { timeBound } from '../support/speed.js';

let ferry: SlackFerry;
let h: Harness;
let port: number;
let slack: ReturnType<typeof mockSlackApi>;

beforeAll(async () => {
  slack = mockSlackApi();
  ferry = await startSlackFerry();
  ({ h, port } = ferry);
});

afterAll(async () => {
  await ferry?.close();
  slack.done();
});

it('300 commands from one user: one refusal sentence, no Slack calls for the rest; another user is not refused', async () => {
  const RATE = /Ferry ignores your commands for the next \d+ s/;
  const t0 = Date.now();
  const acks = await pMap(Array.from({ length: 300 }, (_, i) => i), 16, () => postSigned(port, slashBody('hosts hyp01', { user: 'U0MALLORY' })));
  expect(acks.every((a) => a.status === 200)).toBe(true);
  const floodCalls = () => slack.calls.filter((c) => c.at >= t0 && c.method !== 'auth.test');
  // The sentence: in an ack body or a private message, exactly once.
  const said = acks.filter((a) => RATE.test(a.text)).length + floodCalls().filter((c) => RATE.test(JSON.stringify(c.body))).length;
  expect(said).toBe(1);
  // At most the allowed commands (and that one sentence) reached Slack at all.
  expect(floodCalls().length).toBeLessThanOrEqual(2 * (USER_COMMANDS_MAX + 1));

  const res = await postSigned(port, slashBody('hosts hyp02', { user: 'U0ALICE' }));
  expect(res.status).toBe(200);
  const ack = timeBound(3000);
  expect(res.ms, `Slack's ack limit (${ack.why})`).toBeLessThan(ack.ms);
  expect(res.text).not.toMatch(RATE);
  const sent = Date.now() - res.ms;
  await h.waitFor(async () => /hyp02/.test(res.text) || slack.calls.some((c) => c.at >= sent && /hyp02/.test(JSON.stringify(c.body))), "the operator's answer", 60_000);
});
