/**
 * One way in: every button and form Ferry wires (enumerated from the composition root's router,
 * so a new one cannot be left out) stands for a command and meets the same checks as the typed
 * line. A user outside the needed group, an operator in a channel outside channels.allowed, and
 * anyone while `pause all` is in force are refused with a sentence, and nothing in Redis changes
 * (operations, queues, approvals, locks, posts; only the audit entry of the refusal is new).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { makeHarness, type Harness } from '../support/harness.js';
import { drainLabYaml, setHostVms } from '../support/drain-support.js';
import { handleClick, handleSubmit } from '../../src/bot/actions.js';
import { APPROVE_ACTION, REJECT_ACTION, REJECT_VIEW } from '../../src/approvals/cards.js';
import type { ChannelRef } from '../../src/core/permissions.js';
import type { Conversation } from '../../src/chat/conversation.js';
import type { Refusal } from '../../src/core/refusal.js';

const YAML = `${drainLabYaml()}channels:\n  allowed: [C0OPS]\n`;

/** Everything under the prefix but the audit trail, with values: a click that changes anything shows here. */
async function snapshot(redis: Redis, prefix: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    for (const k of keys) {
      // The audit trail, and BullMQ's own periodic stalled-jobs check (a timer, not state).
      if (k.startsWith(`${prefix}:audit`) || k.endsWith(':stalled-check')) continue;
      const type = await redis.type(k);
      const v =
        type === 'string' ? await redis.get(k)
        : type === 'hash' ? JSON.stringify(Object.entries(await redis.hgetall(k)).sort())
        : type === 'set' ? JSON.stringify((await redis.smembers(k)).sort())
        : type === 'zset' ? JSON.stringify(await redis.zrange(k, 0, -1, 'WITHSCORES'))
        : type === 'list' ? JSON.stringify(await redis.lrange(k, 0, -1))
        : type === 'stream' ? String(await redis.xlen(k))
        : type;
      // A throttle key that expires on its own between two snapshots is not a change.
      const ttl = await redis.pttl(k);
      if (ttl === -2 || v === null) continue; // expired while being read
      out.set(k, `${ttl > 0 && ttl <= 10_000 ? 'expiring:' : ''}${String(v)}`);
    }
  } while (cursor !== '0');
  return out;
}

function changes(a: Map<string, string>, b: Map<string, string>): string[] {
  const keys = new Set([...a.keys(), ...b.keys()]);
  // A short-lived throttle key (a card refresh's one-second lock, set by a trailing refresh that
  // was already in flight) coming or going is not a change; state a click changes lives elsewhere.
  const throttle = (v: string | undefined): boolean => v === undefined || v.startsWith('expiring:');
  return [...keys].filter((k) => a.get(k) !== b.get(k) && !(throttle(a.get(k)) && throttle(b.get(k))));
}

describe('every button and form is authorized like the command it stands for', () => {
  let h: Harness;
  const values = new Map<string, string>();
  let formValue = '';

  beforeAll(async () => {
    h = await makeHarness({ yaml: YAML });
    await setHostVms(h.deps, 'hyp04', 2);
    // Real targets, so an allowed click would change something: a drain waiting for Start,
    // a finished sweep, and an approval request.
    const drain = await h.planned('drain hyp04');
    await h.run('find stale ports hyp01..hyp06');
    const sweep = await h.waitForOp();
    await h.run('remove stale ports hyp01..hyp06');
    const request = await h.waitFor(async () => {
      const ev = [...h.events].reverse().find((e) => e.kind === 'post' && e.message.blocks.some((b) => b.type === 'actions' && b.buttons.some((x) => x.action === APPROVE_ACTION)));
      const btn = ev && 'message' in ev ? ev.message.blocks.flatMap((b) => (b.type === 'actions' ? b.buttons : [])).find((x) => x.action === APPROVE_ACTION) : undefined;
      return btn?.value;
    }, 'an approval card');
    const run = String(drain.id); // a rolling run's buttons name a job id; permission is judged before the job is looked at
    const sample: Record<string, string> = {
      [APPROVE_ACTION]: request,
      [REJECT_ACTION]: request,
      'ferry:drain-start': String(drain.id),
      'ferry:drain-cancel': String(drain.id),
      'ferry:drain-rollback': String(drain.id),
      'ferry:drain-retry': String(drain.id),
      'ferry:drain-skip': `${drain.id} vm-hyp04-01`,
      'ferry:remove-stale-ports': String(sweep.id),
      'ferry:rr-approve': run,
      'ferry:rr-pause': run,
      'ferry:rr-resume': run,
      'ferry:rr-abort': run,
      'ferry:rr-done': `${run}:hyp04`,
    };
    for (const id of h.deps.router.actions.keys()) {
      if (!(id in sample)) throw new Error(`no sample value for button ${id}: add one so it is checked`);
      values.set(id, sample[id]!);
    }
    expect([...h.deps.router.views.keys()]).toEqual([REJECT_VIEW]);
    formValue = request;
    // Nothing runs in the background from here on: every change in Redis is the click's.
    await h.workers?.close();
    await settle();
  });

  /** Let what is in flight (trailing card refreshes) settle: two snapshots in a row agree. */
  async function settle(): Promise<void> {
    await h.waitFor(async () => {
      const a = await snapshot(h.rt.redis, h.rt.prefix);
      await new Promise((r) => setTimeout(r, 300));
      return changes(a, await snapshot(h.rt.redis, h.rt.prefix)).length === 0;
    }, 'Redis to settle');
  }

  afterAll(async () => {
    await h?.close();
  });

  const conv = (user: string): Conversation => ({ surface: 'console', session: h.session, user });

  async function refusedWithoutChange(user: string, what: string, act: (refuse: (r: Refusal) => Promise<void>) => Promise<void>): Promise<string> {
    const before = await snapshot(h.rt.redis, h.rt.prefix);
    const said: string[] = [];
    await act(async (r) => void said.push(r.sentence));
    const after = await snapshot(h.rt.redis, h.rt.prefix);
    expect(changes(before, after), `changed by ${user}'s ${what}`).toEqual([]);
    expect(said).toHaveLength(1);
    return said[0]!;
  }

  const click = (id: string, user: string, channel: ChannelRef) => (refuse: (r: Refusal) => Promise<void>) =>
    handleClick(h.deps, id, { channel, user, conv: conv(user), value: values.get(id)!, groupMembers: {}, refuse });
  const submit = (user: string, channel: ChannelRef) => (refuse: (r: Refusal) => Promise<void>) =>
    handleSubmit(h.deps, REJECT_VIEW, { channel, user, conv: conv(user), value: formValue, groupMembers: {}, refuse }, { reason: 'no' });

  it('enumerates every button Ferry draws', () => {
    expect(values.size).toBeGreaterThanOrEqual(13);
  });

  it('a user outside the needed group is refused with a sentence, and nothing changes', async () => {
    for (const id of values.keys()) {
      const s = await refusedWithoutChange('mallory', id, click(id, 'mallory', 'console'));
      // approve/reject are open to everyone as commands; the request's approvers policy refuses them.
      expect(s, id).toMatch(/needs the operators group|Only the approvers group|You asked for this|nobody/);
    }
    expect(await refusedWithoutChange('mallory', 'reject form', submit('mallory', 'console'))).toMatch(/Only the approvers group/);
  });

  it('an operator in a channel outside channels.allowed is refused with a sentence, and nothing changes', async () => {
    for (const id of values.keys()) {
      const s = await refusedWithoutChange('alice', id, click(id, 'alice', 'C0ELSEWHERE'));
      expect(s, id).toMatch(/^Ferry takes commands in <#C0OPS> only; run .+ there\.$/);
    }
    expect(await refusedWithoutChange('bob', 'reject form', submit('bob', 'C0ELSEWHERE'))).toMatch(/^Ferry takes commands in <#C0OPS> only/);
  });

  it('with pause all in force, every button that starts or changes work is refused, and nothing changes', async () => {
    await h.run('pause all', 'bob');
    await h.waitFor(async () => (await h.rt.redis.keys(`${h.rt.prefix}:*paus*`)).length > 0, 'the pause flag');
    await settle();
    // These only stop things and stay allowed while paused (as their typed commands do).
    const stops = new Set(['ferry:drain-cancel', REJECT_ACTION, 'ferry:rr-pause', 'ferry:rr-abort']);
    for (const id of values.keys()) {
      if (stops.has(id)) continue;
      const s = await refusedWithoutChange('bob', id, click(id, 'bob', 'console'));
      expect(s, id).toMatch(/paused/i);
    }
  });

  it('the same click by someone allowed does change things (the snapshot sees it)', async () => {
    const before = await snapshot(h.rt.redis, h.rt.prefix);
    const said: string[] = [];
    await handleClick(h.deps, 'ferry:drain-cancel', { channel: 'C0OPS', user: 'alice', conv: conv('alice'), value: values.get('ferry:drain-cancel')!, groupMembers: {}, refuse: async (r) => void said.push(r.sentence) });
    expect(said).toEqual([]);
    expect(changes(before, await snapshot(h.rt.redis, h.rt.prefix)).length).toBeGreaterThan(0);
  });
});
