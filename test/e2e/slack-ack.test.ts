/**
 * What a slash command's ack waits for (issue 10): a refusal that the line and the config decide
 * (grammar, selector, permission) is answered in the ack without asking Redis anything; a command
 * that needs Redis to be decided is still told in the ack when Redis does not answer; work that
 * fails to start after an empty ack is told to its user through response_url. Signed requests
 * to the real receiver, a private Redis (paused for writes here), Slack played by the stand-in.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { Harness } from '../support/harness.js';
import http from 'node:http';
import { postSigned, sign, slashBody } from '../support/slack.js';
import { startSlackFerry, type SlackFerry } from '../support/slack-receiver.js';
import { startSlackStandin, type SlackStandin } from '../support/slack-standin.js';
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';
import { REDIS_DOWN_SENTENCE } from '../../src/redis-outage.js';
import { queryAudit } from '../../src/audit/audit.js';

let redis: PrivateRedis;
let admin: Redis;
let slack: SlackStandin;
let ferry: SlackFerry;
let h: Harness;

beforeAll(async () => {
  // Its own Redis: the test pauses it, which must not stall other test files.
  redis = await startPrivateRedis();
  admin = new Redis(redis.url);
  slack = await startSlackStandin();
  ferry = await startSlackFerry({ slackApiUrl: slack.url, redisUrl: redis.url });
  h = ferry.h;
});

afterAll(async () => {
  await admin?.call('CLIENT', 'UNPAUSE').catch(() => undefined);
  await ferry?.close();
  await slack?.close();
  admin?.disconnect();
  await redis?.close();
});

const slash = (text: string, user = 'U0ALICE') => postSigned(ferry.port, slashBody(text, { user, responseUrl: `${slack.responseUrl}1/2` }));
const answer = (res: { text: string }) => JSON.parse(res.text || '{}') as { response_type?: string; text?: string };

it('while Redis takes no writes, refusals of the line and of permission are answered in the ack; a command that needs Redis is told it cannot be reached, and nothing starts', async () => {
  await admin.call('CLIENT', 'PAUSE', '60000', 'WRITE');
  let paused = true;
  try {
    expect(answer(await slash('find stale ports hyp99..hyp01'))).toMatchObject({ response_type: 'ephemeral', text: 'The range hyp99..hyp01 runs backwards; did you mean hyp01..hyp99?' });
    expect(answer(await slash('find stale ports hyp01..hyp03,nosuch7')).text).toMatch(/nosuch7/);
    expect(answer(await slash('frobnicate hyp01')).text).not.toBe(REDIS_DOWN_SENTENCE);
    const denied = answer(await slash('drain hyp03', 'U0NOBODY'));
    expect(denied.response_type).toBe('ephemeral');
    expect(denied.text).toMatch(/drain/);
    expect(denied.text).not.toBe(REDIS_DOWN_SENTENCE);
    // A valid command: whether it is a repeat, over its user's rate or paused is Redis's to say.
    expect(answer(await slash('find stale ports hyp05'))).toMatchObject({ response_type: 'ephemeral', text: REDIS_DOWN_SENTENCE });
    await admin.call('CLIENT', 'UNPAUSE');
    paused = false;
  } finally {
    if (paused) await admin.call('CLIENT', 'UNPAUSE');
  }
  // The permission refusal reaches the audit once Redis takes writes again.
  await h.waitFor(async () => (await queryAudit(h.rt, 'hyp03')).find((e) => e.actor === 'U0NOBODY' && e.outcome === 'refused'), 'the refusal in the audit');
  // The command that was told Redis is away never ran; the next one does.
  expect(answer(await slash('find stale ports hyp06')).text).toBeUndefined();
  const ran = await h.waitFor(async () => (await h.deps.ops.recent(10)).find((o) => o.title === 'find stale ports hyp06'), 'the next sweep');
  expect((await h.deps.ops.recent(10)).filter((o) => o.title === 'find stale ports hyp05')).toEqual([]);
  expect(ran).toBeTruthy();
  // None of the refusals made a Web API call.
  expect(slack.calls.filter((c) => c.method === 'chat.postEphemeral')).toEqual([]);
});

it('a command acked as started whose work then cannot be enqueued tells its user so through response_url', async () => {
  const flow = h.deps.queues.flow;
  const add = flow.add.bind(flow);
  flow.add = () => Promise.reject(new Error('enqueue refused (test)'));
  const t0 = Date.now();
  try {
    const res = await slash('find stale ports hyp07');
    expect(res.status).toBe(200);
    expect(res.text).toBe('');
    const told = await h.waitFor(async () => slack.calls.find((c) => c.at >= t0 && c.method === 'response_url' && /Nothing was started/.test(String(c.body.text))), 'the sentence through response_url');
    expect(String(told.body.text)).toMatch(/enqueue refused \(test\)/);
    expect(told.body.response_type).toBe('ephemeral');
  } finally {
    flow.add = add;
  }
});

it("a sweep's work (its operation, its card) waits until every Slack request already received has been acked, at most 2 s", async () => {
  // A request whose body is still arriving: received, not yet acked.
  const body = slashBody('help', { user: 'U0SLOW', responseUrl: `${slack.responseUrl}1/2` });
  const half = Math.floor(body.length / 2);
  let slow!: http.ClientRequest;
  const answered = new Promise<string>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: ferry.port, path: '/slack/events', method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), ...sign(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks).toString()));
    });
    req.on('error', reject);
    slow = req;
  });
  await new Promise<void>((resolve) => slow.write(body.slice(0, half), () => resolve()));
  const acked = Date.now();
  const res = await slash('find stale ports hyp08', 'U0BURST');
  expect(res.text).toBe('');
  await h.waitFor(async () => (await h.deps.ops.recent(10)).find((o) => o.title === 'find stale ports hyp08'), 'the sweep');
  // Held back by the request still unanswered until the 2 s bound (before: there within milliseconds of the ack).
  expect(Date.now() - acked).toBeGreaterThanOrEqual(1500);
  slow.end(body.slice(half));
  expect(answer({ text: await answered }).text).toMatch(/Ferry commands/);
});
