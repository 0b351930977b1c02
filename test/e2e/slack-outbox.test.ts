/**
 * Slack output survives Slack (issue 13, item 2), in the Procfile shape: `ferry web` and
 * `ferry worker` as separate processes on one Redis, signed slash commands to the real receiver,
 * and a stand-in Web API that goes away (connection refused, then HTTP 503) for 60 s. Work
 * finishes while Slack is away; once it is back every message arrives exactly once, in order in
 * its thread, each card showing its final state. And a sender killed after Slack took a post but
 * before the answer came back: the post is neither lost nor made twice.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { fastLabYaml, makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { slackHttpEnv, startWebAndWorker, type FerryProcess } from '../support/processes.js';
import { startSlackStandin, type SlackStandin, type StandinCall } from '../support/slack-standin.js';
import { freePort, postSigned, slashBody } from '../support/slack.js';
import { OUTBOX_EVENT, SlackOutbox } from '../../src/bot/slack/outbox.js';
import { FINISHED } from '../../src/jobs/operations.js';
import { bound } from '../support/speed.js';

const OUTAGE_MS = 60_000;

describe('the Slack outbox, web and worker as separate processes', () => {
  let slack: SlackStandin;
  let web: FerryProcess;
  let worker: FerryProcess;
  let port: number;
  let h: Harness;
  let prefix: string;
  let outbox: SlackOutbox;

  beforeAll(async () => {
    slack = await startSlackStandin();
    prefix = uniquePrefix('outbox');
    port = await freePort();
    const yaml = fastLabYaml();
    // A sender that died is replaced after 3 s (30 s in production).
    const env = slackHttpEnv({ redisUrl: inject('redisUrl'), prefix, yaml, slackUrl: slack.url, port, extra: { FERRY_SLACK_OUTBOX_LEASE_MS: String(bound(3000)) } });
    // Reads operations and the outbox; no workers, no Slack of its own.
    h = await makeHarness({ yaml, prefix, workers: false });
    outbox = new SlackOutbox(h.rt.redis, prefix);
    const started = startWebAndWorker(env);
    ({ web, worker } = started);
    await started.ready;
  });

  afterAll(async () => {
    await Promise.all([web?.stop(), worker?.stop()]);
    await slack?.close();
    await h?.close();
  });

  const outboxId = (c: StandinCall) => {
    const m = (typeof c.body.metadata === 'string' ? JSON.parse(c.body.metadata) : c.body.metadata) as { event_type?: string; event_payload?: { id?: string } } | undefined;
    return m?.event_type === OUTBOX_EVENT ? String(m.event_payload?.id) : undefined;
  };
  const delivered = (f: (c: StandinCall) => boolean = () => true) => slack.calls.filter((c) => c.status === 200 && !c.error && f(c));
  const logs = () => `web:\n${web.output().slice(-4000)}\nworker:\n${worker.output().slice(-4000)}`;
  const backlogEmpty = async () => {
    const b = await outbox.backlog();
    return b.lanes === 0 && b.messages === 0;
  };

  it('60 s without Slack: the work finishes meanwhile; afterwards every message arrives exactly once, in order, cards in their final state', async () => {
    // Ferry has met Slack once (auth.test) before it goes away.
    expect((await postSigned(port, slashBody('find stale ports hyp01', { channel: 'C0WARM' }))).status).toBe(200);
    await h.waitFor(async () => (await backlogEmpty()) && delivered((c) => c.method === 'chat.postMessage' && c.body.channel === 'C0WARM').length >= 2, 'the warm-up answer', 30_000);
    const seq0 = Number((await h.rt.redis.get(`${prefix}:outbox:seq`)) ?? 0);
    const ops0 = (await h.deps.ops.recent(1))[0]?.id ?? 0;

    const tDown = Date.now();
    let end = slack.outage('refuse');
    const commands: [string, string][] = [
      ['find stale ports hyp01..hyp04', 'C0OPS'],
      ['find stale ports hyp05..hyp08', 'C0OPS'],
      ['find stale ports hyp09..hyp12', 'C0TWO'],
      ['hosts cluster:prod-b', 'C0TWO'],
      ['find stale ports hyp15..hyp20', 'C0FOUR'],
    ];
    for (const [text, channel] of commands) {
      const res = await postSigned(port, slashBody(text, { channel }));
      expect(res.status).toBe(200);
    }
    // Work never waits on Slack: every operation ends while Slack is still away.
    const ops = await h.waitFor(async () => {
      const recent = (await h.deps.ops.recent(10)).filter((o) => o.id > ops0);
      return recent.length >= 5 && recent.every((o) => FINISHED.includes(o.status)) ? recent : undefined;
    }, 'the sweeps to finish during the outage', 30_000);
    expect(Date.now() - tDown).toBeLessThan(OUTAGE_MS);
    // Half the outage refused connections, the other half 503s.
    await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS / 2 - (Date.now() - tDown))));
    await end();
    end = slack.outage('503');
    await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (Date.now() - tDown))));
    expect(delivered((c) => c.at >= tDown && c.method !== 'auth.test')).toEqual([]);
    await end();
    await h.waitFor(backlogEmpty, 'the outbox to drain', 60_000).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${logs()}`);
    });

    // Exactly once: every message queued since the outage began went to Slack one time.
    const seq = Number(await h.rt.redis.get(`${prefix}:outbox:seq`));
    const posts = delivered((c) => c.method === 'chat.postMessage' && c.at >= tDown);
    const ids = posts.map(outboxId);
    const expected = Array.from({ length: seq - seq0 }, (_, i) => String(seq0 + 1 + i));
    expect([...ids].sort((a, b) => Number(a) - Number(b))).toEqual(expected);
    expect(expected.length).toBeGreaterThanOrEqual(9);
    // In order per conversation: a thread's (and a channel's) posts arrive in the order they were said.
    const byThread = new Map<string, number[]>();
    for (const c of posts) {
      const k = `${String(c.body.channel)}/${String(c.body.thread_ts ?? '')}`;
      byThread.set(k, [...(byThread.get(k) ?? []), Number(outboxId(c))]);
    }
    for (const [k, list] of byThread) expect(list, k).toEqual([...list].sort((a, b) => a - b));
    // Replies sit in their card's thread, and every card shows its final state (coalesced: at most one update each).
    for (const seen of ops.filter((o) => o.kind !== 'view')) {
      // Read again: the card is posted beside the work, so its ref can be recorded after the
      // operation ended (a loaded machine did).
      const op = (await h.deps.ops.get(seen.id))!;
      expect(op.cardRef, `job ${op.id}'s card ref`).toBeDefined();
      const card = await outbox.resolve(op.cardRef!);
      expect(card, `card of job ${op.id}`).not.toBeNull();
      const cardPost = posts.find((c) => slack.posted.some((m) => m.ts === card!.ts && outboxId(c) === m.metadata?.event_payload?.id))!;
      const updates = delivered((c) => c.method === 'chat.update' && c.body.ts === card!.ts);
      expect(updates.length, `updates of job ${op.id}'s card`).toBeLessThanOrEqual(1);
      const last = updates.at(-1) ?? cardPost;
      expect(JSON.stringify(last.body.blocks), `job ${op.id}'s card`).toContain('done in');
      const replies = slack.posted.filter((m) => m.thread_ts === card!.ts);
      expect(replies.length, `replies in job ${op.id}'s thread`).toBeGreaterThanOrEqual(1);
    }
    // The outage is logged once per process, and its end once.
    for (const p of [web, worker]) expect(p.output().match(/Slack cannot be reached/g)?.length ?? 0).toBeLessThanOrEqual(1);
    expect(`${web.output()}${worker.output()}`).toMatch(/Slack answers again after \d+ s/);
  });

  // As found: four 429s and the call was given up, and the channel never heard of its sweep.
  it('seven 429s in a row: the card and its summary still arrive, each once, after every Retry-After', async () => {
    const t0 = Date.now();
    slack.rateLimit('chat.postMessage', 7, 1);
    expect((await postSigned(port, slashBody('find stale ports hyp21..hyp22', { channel: 'C0FIVE' }))).status).toBe(200);
    const inFive = (c: StandinCall) => c.at >= t0 && c.method === 'chat.postMessage' && c.body.channel === 'C0FIVE';
    await h.waitFor(async () => (await backlogEmpty()) && delivered((c) => inFive(c) && Boolean(c.body.thread_ts)).length > 0, 'the summary in the card’s thread', 60_000).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${logs()}`);
    });
    const limited = slack.calls.filter((c) => c.at >= t0 && c.method === 'chat.postMessage' && c.status === 429);
    expect(limited).toHaveLength(7);
    const posts = delivered(inFive);
    const ids = posts.map(outboxId);
    expect(new Set(ids).size, 'each outbox message posted once').toBe(ids.length);
    expect(posts.filter((c) => !c.body.thread_ts)).toHaveLength(1);
    const card = slack.posted.find((m) => m.channel === 'C0FIVE' && !m.thread_ts)!;
    expect(slack.posted.find((m) => m.thread_ts === card.ts)?.text).toMatch(/on 2 hosts/);
    // Every retry waited out its Retry-After: no two calls of the method within 1 s while limited.
    const times = slack.calls.filter((c) => c.at >= t0 && c.method === 'chat.postMessage').map((c) => c.at);
    for (let i = 1; i <= limited.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(950);
  });

  // Issue 13 item 5 as found: chat.update (burst 5) honoured Retry-After 2 s as 0 ms.
  it('chat.update answered 429 with Retry-After 2 s three times: each retry waits it out, and the card ends in its final state', async () => {
    const t0 = Date.now();
    slack.rateLimit('chat.update', 3, 2);
    expect((await postSigned(port, slashBody('find stale ports hyp23..hyp24', { channel: 'C0SIX' }))).status).toBe(200);
    const card = await h.waitFor(async () => slack.posted.find((m) => m.channel === 'C0SIX' && !m.thread_ts), 'the card', 30_000);
    const updates = () => slack.calls.filter((c) => c.at >= t0 && c.method === 'chat.update');
    await h.waitFor(async () => (await backlogEmpty()) && updates().some((c) => c.status === 200 && c.body.ts === card.ts), 'the card’s update after the 429s', 60_000).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${logs()}`);
    });
    const calls = updates();
    expect(calls.filter((c) => c.status === 429)).toHaveLength(3);
    for (let i = 1; i <= 3; i++) expect(calls[i]!.at - calls[i - 1]!.at, `update ${i} after a Retry-After of 2 s`).toBeGreaterThanOrEqual(1950);
    expect(JSON.stringify(calls.filter((c) => c.status === 200 && c.body.ts === card.ts).at(-1)!.body.blocks)).toContain('done in');
  });

  it('a sender killed after Slack took its post but before the answer came back: the post is in Slack once, and its thread goes on', async () => {
    const t0 = Date.now();
    const release = slack.hold('chat.postMessage', { afterEffect: true });
    let released = false;
    try {
      expect((await postSigned(port, slashBody('find stale ports hyp13..hyp14', { channel: 'C0THREE' }))).status).toBe(200);
      const first = await h.waitFor(async () => delivered((c) => c.at >= t0 && c.method === 'chat.postMessage' && c.body.channel === 'C0THREE').at(0), 'the card to reach Slack');
      const id = outboxId(first)!;
      // The sweep ends first (its summary is then queued behind the held card): if the sender
      // killed is the worker, nobody else would run the sweep's remaining hosts.
      const sweep = await h.waitFor(async () => {
        const op = (await h.deps.ops.recent(1))[0];
        return op && op.createdAt >= t0 && FINISHED.includes(op.status) ? op : undefined;
      }, 'the sweep to finish');
      expect(sweep.hosts).toEqual(['hyp13', 'hyp14']);
      // Whoever holds the lane is mid-post: kill it.
      // The top-level lane of the channel and its requester (slashBody: U0ALICE).
      const token = await h.rt.redis.get(`${prefix}:outbox:claim:p:C0THREE::U0ALICE`);
      const pid = Number(token?.split(':')[0]);
      const [victim, survivor] = web.child.pid === pid ? [web, worker] : [worker, web];
      expect(victim.child.pid).toBe(pid);
      await victim.stop('SIGKILL');
      release();
      released = true;
      const card = slack.posted.find((m) => m.metadata?.event_payload?.id === id)!;
      const summary = await h.waitFor(async () => slack.posted.find((m) => m.channel === 'C0THREE' && m.thread_ts === card.ts), 'the summary in the card’s thread', 30_000).catch((e: unknown) => {
        throw new Error(`${String(e)}\n${logs()}`);
      });
      expect(summary.text).toMatch(/of 2 swept/);
      expect(slack.posted.filter((m) => m.metadata?.event_payload?.id === id)).toHaveLength(1);
      expect(slack.posted.filter((m) => m.channel === 'C0THREE' && !m.thread_ts)).toHaveLength(1);
      expect(survivor.output()).toMatch(/an interrupted post had reached Slack; not posting it again/);
    } finally {
      if (!released) release();
    }
  });
});
