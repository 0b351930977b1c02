/**
 * Work never waits on Slack: signed slash commands to the real HTTP receiver, real Redis and
 * BullMQ, and the Web API played by a local stand-in that enforces Slack's rate and Block Kit
 * limits (test/support/slack-standin.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Harness } from '../support/harness.js';
import { postSigned, slashBody } from '../support/slack.js';
import { startSlackFerry, type SlackFerry } from '../support/slack-receiver.js';
import { startSlackStandin, type SlackStandin, type StandinCall } from '../support/slack-standin.js';

describe('Slack: the card beside the work, answers in the ack', () => {
  let ferry: SlackFerry;
  let h: Harness;
  let port: number;
  let slack: SlackStandin;

  beforeAll(async () => {
    slack = await startSlackStandin({ notMemberOf: ['G0PRIVATE'] });
    ferry = await startSlackFerry({ slackApiUrl: slack.url });
    ({ h, port } = ferry);
  });

  afterAll(async () => {
    await ferry?.close();
    await slack.close();
  });

  const since = (t: number, f: (c: StandinCall) => boolean = () => true) => slack.calls.filter((c) => c.at >= t && c.method !== 'auth.test' && f(c));
  const slash = (text: string, opts: { user?: string; channel?: string } = {}) => postSigned(port, slashBody(text, { ...opts, responseUrl: `${slack.responseUrl}1/2` }));

  it('the sweep runs while its card is still on its way, and the card is the one top-level post', async () => {
    const t0 = Date.now();
    const release = slack.hold('chat.postMessage');
    let released = false;
    try {
      const res = await slash('find stale ports hyp01..hyp12');
      expect(res.status).toBe(200);
      expect(res.text).toBe('');
      // Every host is swept while Slack still has not answered the card's post.
      const op = await h.waitFor(async () => {
        const [o] = await h.deps.ops.recent(1);
        return o && o.title === 'find stale ports hyp01..hyp12' && (await h.rt.redis.hlen(h.rt.key('op', o.id, 'results'))) === 12 ? o : undefined;
      }, 'all 12 hosts swept');
      // The card is queued in the outbox (its ref is known), not yet in Slack.
      expect(await h.deps.slackOutbox!.resolve(op.cardRef!)).toBeNull();
      expect(since(t0, (c) => c.method === 'chat.postMessage')).toHaveLength(0);
      release();
      released = true;
      const summary = await h.waitFor(async () => since(t0, (c) => c.method === 'chat.postMessage' && /\(of 12 swept\)/.test(String(c.body.text))).at(0), 'the summary');
      const posts = since(t0, (c) => c.method === 'chat.postMessage');
      const topLevel = posts.filter((c) => !c.body.thread_ts);
      expect(topLevel).toHaveLength(1);
      const card = topLevel[0]!;
      expect(JSON.stringify(card.body.blocks)).toContain('find stale ports hyp01..hyp12 → 12 hosts: hyp01…hyp12');
      const done = await h.deps.ops.get(op.id);
      const cardTs = (await h.deps.slackOutbox!.resolve(done!.cardRef!))?.ts;
      expect(summary.body.thread_ts).toBe(cardTs);
      expect(posts).toHaveLength(2);
      // The final card says done: the sweep ended while the card waited, so the card went with its final state.
      await h.waitFor(async () => since(t0, (c) => (c.method === 'chat.update' || c === card) && /12\/12 hosts/.test(String(c.body.text)) && JSON.stringify(c.body.blocks).includes('done in')).at(0), 'final card');
      expect(slack.rateLimited()).toEqual([]);
    } finally {
      if (!released) release();
    }
  });

  it('bad input is refused in the ack body: ephemeral, no Web API call, even where Ferry is not a member', async () => {
    const t0 = Date.now();
    const before = (await h.deps.ops.recent(100)).length;
    const res = await slash('find stale ports hyp99..hyp01', { channel: 'G0PRIVATE' });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toMatchObject({ response_type: 'ephemeral', text: 'The range hyp99..hyp01 runs backwards; did you mean hyp01..hyp99?' });
    const denied = await slash('drain hyp03', { user: 'U0NOBODY' });
    expect(JSON.parse(denied.text)).toMatchObject({ response_type: 'ephemeral' });
    expect(String(JSON.parse(denied.text).text)).toMatch(/drain/);
    // A later command from the same user in the same channel: its card arrives, and nothing
    // else was ever sent for the two refusals.
    await slash('find stale ports hyp01..hyp02');
    await h.waitFor(async () => since(t0, (c) => c.method === 'chat.postMessage').at(0), 'the next command’s card');
    expect(since(t0, (c) => c.method === 'chat.postEphemeral' || c.method === 'response_url')).toEqual([]);
    expect(since(t0, (c) => c.method === 'chat.postMessage' && c.body.channel === 'G0PRIVATE')).toEqual([]);
    expect((await h.deps.ops.recent(100)).length).toBe(before + 1);
  });

  it('help is answered in the ack body, inside Block Kit limits', async () => {
    const t0 = Date.now();
    const res = await slash('help');
    const body = JSON.parse(res.text) as { response_type: string; blocks: unknown[]; text: string };
    expect(body.response_type).toBe('ephemeral');
    expect(JSON.stringify(body.blocks)).toContain('What you can ask Ferry');
    const { blockKitViolation } = await import('../support/slack-standin.js');
    expect(blockKitViolation(body.blocks)).toBeNull();
    const next = await slash('find stale ports hyp03');
    expect(next.status).toBe(200);
    await h.waitFor(async () => since(t0, (c) => c.method === 'chat.postMessage').at(0), 'the next command’s card');
    expect(since(t0, (c) => c.method === 'chat.postEphemeral' || c.method === 'response_url')).toEqual([]);
  });

  it('a mention or DM with bad input is refused with a message in its thread or the DM, never an ephemeral', async () => {
    const t0 = Date.now();
    const event = (id: string, e: Record<string, unknown>) =>
      JSON.stringify({ token: 'legacy', team_id: 'T1', api_app_id: 'A1', type: 'event_callback', event_id: id, event_time: Math.floor(t0 / 1000), event: e });
    const sentence = 'The range hyp99..hyp01 runs backwards; did you mean hyp01..hyp99?';
    const mention = await postSigned(port, event('Ev0BADMENTION', { type: 'app_mention', user: 'U0ALICE', text: '<@UFERRY> find stale ports hyp99..hyp01', ts: '1700000050.000300', channel: 'C0MENTION', event_ts: '1700000050.000300' }), { contentType: 'application/json' });
    const dm = await postSigned(port, event('Ev0BADDM', { type: 'message', channel_type: 'im', user: 'U0ALICE', text: 'find stale ports hyp99..hyp01', ts: '1700000051.000300', channel: 'D0ALICE', event_ts: '1700000051.000300' }), { contentType: 'application/json' });
    expect([mention.status, dm.status]).toEqual([200, 200]);
    const inThread = await h.waitFor(async () => since(t0, (c) => c.method === 'chat.postMessage' && c.body.channel === 'C0MENTION').at(0), 'the refusal under the mention');
    expect(inThread.body.text).toBe(sentence);
    expect(inThread.body.thread_ts).toBe('1700000050.000300');
    const inDm = await h.waitFor(async () => since(t0, (c) => c.method === 'chat.postMessage' && c.body.channel === 'D0ALICE').at(0), 'the refusal in the DM');
    expect(inDm.body.text).toBe(sentence);
    expect(since(t0, (c) => c.method === 'chat.postEphemeral')).toEqual([]);
  });
});
