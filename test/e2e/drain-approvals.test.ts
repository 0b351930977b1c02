/**
 * Drain under an approval policy (approvals.drain.approvals: 1), on the lab with real Redis and
 * in-process workers: the plan becomes a request in the approvals store (the same card, hash
 * binding, expiry sweep and execution claim as stale-port removal). Nothing moves before an
 * approver other than the requester approves; a plan that no longer holds at approval (a VM
 * moved) voids the approval and the drain is planned again; an expired request's card loses its
 * buttons and the drain ends; a restart between request and approval loses nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import type { Clock } from '../../src/runtime.js';
import type { Operation } from '../../src/jobs/operations.js';
import type { Message } from '../../src/chat/messages.js';
import type { ApprovalRequest } from '../../src/approvals/policy.js';
import { ApprovalStore } from '../../src/approvals/store.js';
import { expireDue } from '../../src/approvals/service.js';
import { labKeys } from '../../src/adapters/lab/control.js';
import { readLock } from '../../src/jobs/drain/locks.js';
import { drainLabYaml, hostState, migrationsPerVm, setHostVms, whereIs } from '../support/drain-support.js';

const CLUSTER = ['hyp01', 'hyp02', 'hyp03', 'hyp04', 'hyp05', 'hyp06'];
const POLICY = `approvals:\n  drain:\n    approvals: 1\n    approvers: [group:approvers]\n    expiry: 30m\n`;
const harnesses: Harness[] = [];

afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.close().catch(() => undefined);
});

async function harness(opts: { clock?: Clock; prefix?: string } = {}): Promise<Harness> {
  const h = await makeHarness({ yaml: drainLabYaml() + POLICY, ...opts });
  harnesses.push(h);
  return h;
}

async function waitStage(h: Harness, id: number, stage: string, status = 'waiting'): Promise<Operation> {
  return h.waitFor(async () => {
    const op = await h.deps.ops.get(id);
    return op && op.params.stage === stage && op.status === status ? op : undefined;
  }, `job ${id} to reach ${stage}/${status}`);
}

/** `drain <host>` and wait until its plan waits on an approval request; returns the op and request id. */
async function requested(h: Harness, host: string): Promise<{ op: Operation; id: string }> {
  await h.run(`drain ${host}`);
  const first = await h.waitFor(async () => (await h.deps.ops.recent(1))[0], 'the drain operation');
  const op = await waitStage(h, first.id, 'awaiting-start');
  expect(typeof op.params.approvalId).toBe('string');
  const id = op.params.approvalId as string;
  // Cards arrive over pub/sub: wait for the approval card and the plan card pointing at it.
  await h.waitFor(async () => lastCard(h, id) !== undefined && h.transcript().includes(`waiting for approval request ${id}`), 'the approval and plan cards');
  return { op, id };
}

async function request(h: Harness, id: string): Promise<ApprovalRequest<unknown>> {
  return (await new ApprovalStore(h.rt).get(id))!.request;
}

async function refusal(h: Harness, user: string, line: string): Promise<string> {
  const before = h.ephemerals(user).length;
  await h.run(line, user);
  return h.waitFor(async () => h.ephemerals(user)[before], `a refusal for ${user}`, 5000);
}

/** The newest rendering (post or update) of an approval request's card. */
function lastCard(h: Harness, id: string): Message | undefined {
  return h.events
    .filter((e) => e.kind !== 'ephemeral')
    .map((e) => e.message)
    .filter((m) => m.text.startsWith(`Approval request ${id}:`))
    .at(-1);
}

const hasButtons = (m: Message | undefined) => Boolean(m?.blocks.some((b) => b.type === 'actions'));

/** Move a VM between lab hosts behind Ferry's back (someone used the hypervisor's own console). */
async function moveBehindFerry(h: Harness, vm: string, from: string, to: string): Promise<void> {
  const keys = labKeys(h.rt.prefix);
  const src = await hostState(h.rt, from);
  const dst = await hostState(h.rt, to);
  const i = src.vms.findIndex((v) => v.name === vm);
  const [moved] = src.vms.splice(i, 1);
  dst.vms.push({ ...moved!, host: to });
  await h.rt.redis.set(keys.host(from), JSON.stringify(src));
  await h.rt.redis.set(keys.host(to), JSON.stringify(dst));
}

describe('drain with approvals.drain.approvals: 1', () => {
  it('moves nothing until an approver other than the requester approves; the card says who asked, the plan, approvals, approvers, expiry', async () => {
    const h = await harness();
    const names = await setHostVms(h.deps, 'hyp03', 3);
    const { op, id } = await requested(h, 'hyp03');

    const card = lastCard(h, id)!;
    const text = JSON.stringify(card.blocks);
    expect(text).toContain('Asked by @alice');
    expect(text).toContain(names[0]!);
    expect(text).toContain('*Approvals needed*\\n1');
    expect(text).toContain('the approvers group');
    expect(text).toContain('*Expires*');
    expect(hasButtons(card)).toBe(true);
    // The plan card keeps Cancel and points at the request; no Start for the requester.
    await h.waitForText(`waiting for approval request ${id}`);

    // The requester: a typed Start and an approve are the same refused self-approval.
    expect(await refusal(h, 'alice', `start ${op.id}`)).toBe('You asked for this; someone else has to approve it.');
    expect(await refusal(h, 'alice', `approve ${id}`)).toBe('You asked for this; someone else has to approve it.');
    expect(await refusal(h, 'dave', `approve ${id}`)).toBe('Only the approvers group may approve or reject this request.');
    await new Promise((r) => setTimeout(r, 300));
    expect((await h.deps.ops.get(op.id))!.status).toBe('waiting');
    expect((await hostState(h.rt, 'hyp03')).facts.maintenance).toBe(false);
    expect((await migrationsPerVm(h.rt.redis, h.rt.prefix)).size).toBe(0);

    await h.run(`approve ${id}`, 'bob');
    const done = await h.waitForOp(op.id, 30_000);
    expect(done.status).toBe('succeeded');
    expect(done.summary).toBe('3 moved, 0 skipped, 0 failed');
    const where = await whereIs(h.rt, CLUSTER);
    for (const n of names) expect(where.get(n)).not.toBe('hyp03');
    // The execution claim: approved -> executed, once; the card has no buttons any more.
    expect((await request(h, id)).status).toBe('executed');
    expect(hasButtons(lastCard(h, id))).toBe(false);
    // A late second approver changes nothing.
    expect(await refusal(h, 'carol', `approve ${id}`)).toMatch(/^Already approved by @bob and carried out/);
    const per = await migrationsPerVm(h.rt.redis, h.rt.prefix);
    for (const n of names) expect(per.get(n)).toBe(1);
    // Audit: the request, the refused self-approval, the approval and the start.
    const audit = h.rt.redis;
    const raw = (await audit.xrange(`${h.rt.prefix}:audit`, '-', '+')) as [string, string[]][];
    const actions = raw.map(([, f]) => JSON.parse(f[f.indexOf('json') + 1]!) as { action: string; actor: string; outcome: string });
    expect(actions.some((a) => a.action.startsWith(`request approval ${id}:`))).toBe(true);
    expect(actions.some((a) => a.action === `approve request ${id}` && a.actor === 'alice' && a.outcome === 'refused')).toBe(true);
    expect(actions.some((a) => a.action === `approve request ${id}` && a.actor === 'bob' && a.outcome === 'ok')).toBe(true);
    expect(actions.some((a) => a.action === `start job ${op.id}` && a.outcome === 'ok')).toBe(true);
  });

  it('a VM moved between the card and the approval: the approval is void, nothing moves, the drain is planned again with a new request', async () => {
    const h = await harness();
    const names = await setHostVms(h.deps, 'hyp03', 3);
    const { op, id } = await requested(h, 'hyp03');
    await moveBehindFerry(h, names[0]!, 'hyp03', 'hyp04');

    await h.run(`approve ${id}`, 'bob');
    await h.waitFor(async () => (await request(h, id)).status === 'void', 'the old request to be void');
    expect((await request(h, id)).voidReason).toContain(`${names[0]} is no longer on hyp03`);
    expect(hasButtons(lastCard(h, id))).toBe(false);
    // Planned again: a new request for the new plan (two VMs), and nothing moved meanwhile.
    const again = await h.waitFor(async () => {
      const o = await h.deps.ops.get(op.id);
      return o?.params.stage === 'awaiting-start' && o.status === 'waiting' && o.params.approvalId !== id ? o : undefined;
    }, 'the new plan and its request');
    const id2 = again.params.approvalId as string;
    expect(JSON.stringify((await request(h, id2)).plan)).not.toContain(names[0]!);
    expect((await migrationsPerVm(h.rt.redis, h.rt.prefix)).size).toBe(0);
    expect((await hostState(h.rt, 'hyp03')).facts.maintenance).toBe(false);
    await h.waitForText(`Request ${id} is void: the plan no longer holds`);
    // The old card's approval stays void; the new one runs.
    expect(await refusal(h, 'carol', `approve ${id}`)).toMatch(/^This request is void/);
    await h.run(`approve ${id2}`, 'carol');
    const done = await h.waitForOp(op.id, 30_000);
    expect(done.status).toBe('succeeded');
    expect(done.summary).toBe('2 moved, 0 skipped, 0 failed');
    expect((await whereIs(h.rt, CLUSTER)).get(names[0]!)).toBe('hyp04');
    expect((await migrationsPerVm(h.rt.redis, h.rt.prefix)).get(names[0]!)).toBeUndefined();
  });

  it('an expired request: its card loses its buttons, the drain ends with nothing moved and frees the host', async () => {
    let offset = 0;
    const h = await harness({ clock: { now: () => Date.now() + offset } });
    await setHostVms(h.deps, 'hyp03', 2);
    const { op, id } = await requested(h, 'hyp03');
    expect(hasButtons(lastCard(h, id))).toBe(true);
    offset = 31 * 60_000;
    expect(await expireDue(h.deps)).toContain(id);
    expect((await request(h, id)).status).toBe('expired');
    const ended = await h.waitForOp(op.id, 10_000);
    expect(ended.status).toBe('cancelled');
    await h.waitFor(async () => !hasButtons(lastCard(h, id)), 'the card to lose its buttons');
    expect(JSON.stringify(lastCard(h, id)!.blocks)).toContain('without enough approvals');
    await h.waitForText(`Request ${id} expired at`);
    await h.waitForText('Nothing was moved');
    expect(await refusal(h, 'bob', `approve ${id}`)).toMatch(/^This request expired at/);
    expect(await readLock(h.rt, 'hyp03')).toBeNull();
    expect((await migrationsPerVm(h.rt.redis, h.rt.prefix)).size).toBe(0);
  });

  it('reject on the card ends the drain; Cancel on the plan card voids a pending request', async () => {
    const h = await harness();
    await setHostVms(h.deps, 'hyp03', 2);
    const { op, id } = await requested(h, 'hyp03');
    await h.run(`reject ${id} not tonight`, 'carol');
    const ended = await h.waitForOp(op.id, 10_000);
    expect(ended.status).toBe('cancelled');
    await h.waitForText('rejected by @carol (not tonight)');
    expect(await readLock(h.rt, 'hyp03')).toBeNull();

    const second = await requested(h, 'hyp03');
    await h.run(`cancel ${second.op.id}`);
    await h.waitForOp(second.op.id, 10_000);
    expect((await request(h, second.id)).status).toBe('void');
    expect(hasButtons(lastCard(h, second.id))).toBe(false);
    expect((await migrationsPerVm(h.rt.redis, h.rt.prefix)).size).toBe(0);
  });

  it('a restart between request and approval: the new process approves the stored request and the drain runs', async () => {
    const a = await harness();
    const names = await setHostVms(a.deps, 'hyp03', 2);
    const { op, id } = await requested(a, 'hyp03');
    const prefix = a.rt.prefix;
    harnesses.splice(harnesses.indexOf(a), 1);
    await a.close();

    const b = await harness({ prefix });
    expect((await request(b, id)).status).toBe('pending');
    await b.run(`approve ${id}`, 'bob');
    const done = await b.waitFor(async () => {
      const o = await b.deps.ops.get(op.id);
      return o && ['succeeded', 'partial', 'failed', 'cancelled'].includes(o.status) ? o : undefined;
    }, 'the drain to finish on the new process', 30_000);
    expect(done.status).toBe('succeeded');
    const where = await whereIs(b.rt, CLUSTER);
    for (const n of names) expect(where.get(n)).not.toBe('hyp03');
    expect((await request(b, id)).status).toBe('executed');
  });

  it('migrate under approvals.migrate: 1 uses the same request; a VM that moved meanwhile voids it and the migration ends', async () => {
    const h = await makeHarness({ yaml: drainLabYaml() + POLICY + `  migrate:\n    approvals: 1\n` });
    harnesses.push(h);
    const [vm, vm2] = await setHostVms(h.deps, 'hyp03', 2);
    const start = async (line: string) => {
      await h.run(line);
      const first = await h.waitFor(async () => (await h.deps.ops.recent(1))[0], 'the migrate operation');
      const op = await waitStage(h, first.id, 'awaiting-start');
      return { op, id: op.params.approvalId as string };
    };
    const a = await start(`migrate ${vm} to hyp04`);
    expect(a.id).toMatch(/^\d+$/);
    expect(await refusal(h, 'alice', `approve ${a.id}`)).toBe('You asked for this; someone else has to approve it.');
    await h.run(`approve ${a.id}`, 'bob');
    expect((await h.waitForOp(a.op.id, 20_000)).status).toBe('succeeded');
    expect((await whereIs(h.rt, CLUSTER)).get(vm!)).toBe('hyp04');

    const b = await start(`migrate ${vm2} to hyp05`);
    await moveBehindFerry(h, vm2!, 'hyp03', 'hyp06');
    await h.run(`approve ${b.id}`, 'carol');
    const ended = await h.waitForOp(b.op.id, 20_000);
    expect(ended.status).toBe('cancelled');
    expect((await request(h, b.id)).status).toBe('void');
    expect((await whereIs(h.rt, CLUSTER)).get(vm2!)).toBe('hyp06');
    expect((await migrationsPerVm(h.rt.redis, h.rt.prefix)).get(vm2!)).toBeUndefined();
  });
});
