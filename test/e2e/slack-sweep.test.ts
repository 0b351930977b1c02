/**
 * The Slack path end to end: correctly signed requests to Ferry's real HTTP receiver, real
 * Redis and BullMQ, nock standing in for the Web API (asserting what is posted and updated).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { SLACK_API_URL, callText, buttonBody, mockSlackApi, postSigned, sign, slashBody } from '../support/slack.js';
import { startSlackFerry, type SlackFerry } from '../support/slack-receiver.js';
import { clickAction } from '../../src/bot/actions.js';
import { timeBound } from '../support/speed.js';

describe('Slack: /ferry find stale ports through the real HTTP receiver', () => {
  let ferry: SlackFerry;
  let h: Harness;
  let port: number;
  let slack: ReturnType<typeof mockSlackApi>;

  beforeAll(async () => {
    slack = mockSlackApi();
    // One extra button whose handler fails (it stands for the read-only "jobs", so anyone may click it).
    const explode = clickAction('jobs', () => ({ name: 'jobs' }), async () => {
      throw new Error('the lab is on fire');
    });
    ferry = await startSlackFerry({ adjust: (workflows, chat) => ({ workflows, chat: [...chat, { name: 'test', actions: { 'ferry:test-explode': explode } }] }) });
    ({ h, port } = ferry);
  });

  afterAll(async () => {
    await ferry?.close();
    slack.done();
  });

  const since = (t: number) => slack.calls.filter((c) => c.at >= t);

  it('acks in well under a second, answers with the card, and the summary follows in its thread', async () => {
    const t0 = Date.now();
    const res = await postSigned(port, slashBody('find stale ports hyp01..hyp12'));
    expect(res.status).toBe(200);
    const ack = timeBound(1000);
    expect(res.ms, ack.why).toBeLessThan(ack.ms);

    const op = await h.waitFor(async () => {
      const [o] = await h.deps.ops.recent(1);
      return o && o.status === 'succeeded' && o.cardRef ? o : undefined;
    }, 'sweep to finish');
    // The final card (the card post itself when the sweep ended before it went, else its last update).
    await h.waitFor(async () => since(t0).filter((c) => c.method === 'chat.update' || (c.method === 'chat.postMessage' && !c.body.thread_ts)).some((c) => /12\/12 hosts · \d+ stale ports?\n/.test(callText(c))), 'final card');
    await h.waitFor(async () => since(t0).filter((c) => c.method === 'chat.postMessage').length >= 2, 'the summary');

    const calls = since(t0);
    const posts = calls.filter((c) => c.method === 'chat.postMessage');
    const [card, summary] = posts;
    // One top-level post: the card is the answer, and its thread is the operation's.
    expect(card!.body.channel).toBe('C0OPS');
    expect(card!.body.thread_ts).toBeUndefined();
    expect(callText(card!)).toContain('find stale ports hyp01..hyp12 → 12 hosts: hyp01…hyp12');
    // Ferry knows the thread by the card's outbox ref; the outbox knows Slack's ts for it.
    expect(op.conv.surface === 'slack' ? op.conv.threadTs : undefined).toBe(op.cardRef?.ts);
    const rootTs = (await h.deps.slackOutbox!.resolve(op.cardRef!))?.ts;
    expect(rootTs).toMatch(/^\d+\.000100$/);
    expect(summary!.body.thread_ts).toBe(rootTs);
    expect(callText(summary!)).toMatch(/stale ports? on \d+ hosts? \(of 12 swept\)/);
    expect(callText(summary!)).toMatch(/hyp\d\d\s+C003FF[0-9A-F]{10}\s+100000C0DD00[AB]0[AB]0/);
    const button = (summary!.body.blocks as { type: string; elements?: { action_id: string }[] }[]).find((b) => b.type === 'actions');
    expect(button?.elements?.[0]?.action_id).toBe('ferry:remove-stale-ports');

    const updates = calls.filter((c) => c.method === 'chat.update');
    for (const u of updates) expect(u.body.ts).toBe(rootTs);
    // Updates of one card are throttled to about one a second.
    for (let i = 1; i < updates.length - 1; i++) expect(updates[i]!.at - updates[i - 1]!.at).toBeGreaterThanOrEqual(900);
    // Constant Slack calls per sweep: card + summary posts, and updates at most about one a second
    // of the sweep (how many seconds a busy machine takes varies, so no fixed count).
    expect(posts.length).toBe(2);
    // Ferry learns its own identity once per process, not once per request.
    expect(slack.calls.filter((c) => c.method === 'auth.test').length).toBeLessThanOrEqual(1);
    const span = updates.at(-1)!.at - posts[0]!.at;
    expect(updates.length, `${updates.length} card updates over ${span} ms`).toBeLessThanOrEqual(2 + Math.floor(span / 900));
  });

  it('serves no /healthz or /metrics on the public Slack port (they live on HEALTH_PORT), and counts what it did', async () => {
    for (const p of ['/healthz', '/metrics']) expect((await fetch(`http://127.0.0.1:${port}${p}`)).status).toBe(404);
    // The sweep of the first test has finished and posted by now (it waited for its summary).
    const metrics = await h.waitFor(async () => {
      const m = await h.deps.rt.metrics.text();
      return /^ferry_operations_finished_total\{kind="[a-z-]+",status="succeeded"\} [1-9]/m.test(m) ? m : undefined;
    }, 'a finished operation in the metrics');
    expect(metrics).toMatch(/^ferry_slack_ack_seconds_count\{kind="command"\} [1-9]\d*$/m);
    expect(metrics).toMatch(/^ferry_slack_calls_total\{method="chat.postMessage"\} [1-9]\d*$/m);
    expect(metrics).toMatch(/^ferry_job_duration_seconds_count\{kind="[a-z-]+",outcome="done"\} [1-9]\d*$/m);
    expect(metrics).toMatch(/^ferry_operations_finished_total\{kind="[a-z-]+",status="succeeded"\} [1-9]\d*$/m);
  });

  it('an unsigned or wrongly signed request gets 401 and runs nothing', async () => {
    const before = (await h.deps.ops.recent(100)).length;
    const body = slashBody('find stale ports hyp01..hyp03');
    expect((await postSigned(port, body, { signature: null })).status).toBe(401);
    expect((await postSigned(port, body, { signature: sign(body, undefined, 'not-the-secret') })).status).toBe(401);
    expect((await postSigned(port, body, { signature: sign(body, Math.floor(Date.now() / 1000) - 3600) })).status).toBe(401);
    await new Promise((r) => setTimeout(r, 300));
    expect((await h.deps.ops.recent(100)).length).toBe(before);
  });

  it('a retried delivery (X-Slack-Retry-Num) of the same event runs once', async () => {
    const before = (await h.deps.ops.recent(100)).length;
    const event = JSON.stringify({
      token: 'legacy',
      team_id: 'T1',
      api_app_id: 'A1',
      type: 'event_callback',
      event_id: 'Ev0RETRY1',
      event_time: Math.floor(Date.now() / 1000),
      event: { type: 'app_mention', user: 'U0ALICE', text: '<@UFERRY> find stale ports hyp01..hyp02', ts: '1700000000.000200', channel: 'C0OPS', event_ts: '1700000000.000200' },
    });
    const first = await postSigned(port, event, { contentType: 'application/json' });
    const retry1 = await postSigned(port, event, { contentType: 'application/json', headers: { 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' } });
    const retry2 = await postSigned(port, event, { contentType: 'application/json', headers: { 'x-slack-retry-num': '2', 'x-slack-retry-reason': 'http_timeout' } });
    expect([first.status, retry1.status, retry2.status]).toEqual([200, 200, 200]);
    await h.waitFor(async () => (await h.deps.ops.recent(100)).length > before, 'the mention to start an operation');
    await new Promise((r) => setTimeout(r, 500));
    const ops = (await h.deps.ops.recent(100)).slice(0, (await h.deps.ops.recent(100)).length - before);
    expect(ops).toHaveLength(1);
    expect(ops[0]!.title).toBe('find stale ports hyp01..hyp02');
    expect(slack.calls.filter((c) => c.method === 'auth.test')).toHaveLength(1);
  });

  it('a button whose handler fails tells the clicker instead of failing silently', async () => {
    const t0 = Date.now();
    const res = await postSigned(port, buttonBody('ferry:test-explode', 'x', 'trig-explode'));
    expect(res.status).toBe(200);
    const eph = await h.waitFor(async () => since(t0).find((c) => c.method === 'chat.postEphemeral'), 'the ephemeral explanation');
    expect(eph.body.user).toBe('U0ALICE');
    expect(eph.body.text).toBe('Ferry could not finish that click: the lab is on fire. The thread shows what did happen; try again or type the command.');
  });

  it('bad input gets one ephemeral sentence in the ack body and nothing is enqueued', async () => {
    const before = (await h.deps.ops.recent(100)).length;
    const res = await postSigned(port, slashBody('find stale ports hyp99..hyp01'));
    expect(JSON.parse(res.text)).toMatchObject({ response_type: 'ephemeral', text: 'The range hyp99..hyp01 runs backwards; did you mean hyp01..hyp99?' });
    expect((await h.deps.ops.recent(100)).length).toBe(before);
  });
});

describe('Slack Web API errors are logged and the result is kept', () => {
  it('channel_not_found on every post: the sweep still finishes and its result stays in Redis', async () => {
    const slack = mockSlackApi({ failWith: { 'chat.postMessage': 'channel_not_found', 'chat.update': 'channel_not_found' } });
    const h = await makeHarness({ env: { SLACK_BOT_TOKEN: 'xoxb-test', SLACK_API_URL } });
    try {
      const conv = { surface: 'slack' as const, channel: 'C0GONE', user: 'U0ALICE' };
      const { startSweep } = await import('../../src/jobs/workflows/find-stale-ports.js');
      const op = await startSweep(h.deps, { conv, requester: 'U0ALICE', title: 'find stale ports hyp01..hyp03', hosts: ['hyp01', 'hyp02', 'hyp03'] });
      const done = await h.waitFor(async () => {
        const o = await h.deps.ops.get(op.id);
        return o?.status === 'succeeded' ? o : undefined;
      }, 'sweep');
      expect(done.summary).toMatch(/stale ports? on 3 hosts/);
      expect(Object.keys(await h.deps.ops.results(op.id))).toHaveLength(3);
      expect(slack.calls.filter((c) => c.method === 'chat.postMessage').length).toBeGreaterThan(0);
    } finally {
      await h.close();
      slack.done();
    }
  });
});
