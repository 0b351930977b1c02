/**
 * Approvals through the console path (the same handleLine, actions and jobs Slack uses), over
 * real Redis, BullMQ workers and the lab: the done-means flow and every abuse case the issue
 * lists that does not need Slack's HTTP receiver (those are in approvals-slack.test.ts).
 */
import { PassThrough, Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { fastLabYaml, makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { FerryConsole } from '../../src/bot/console/console.js';
import { handleClick } from '../../src/bot/actions.js';
import { ApprovalStore } from '../../src/approvals/store.js';
import { decideApproval, expireDue, EXPIRY_JOB } from '../../src/approvals/service.js';
import { planHash } from '../../src/approvals/plan-hash.js';
import { queryAudit } from '../../src/audit/audit.js';
import { findStalePorts } from '../../src/core/stale-ports.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import type { PlannedPort } from '../../src/approvals/cards.js';
import type { LabHostState } from '../../src/adapters/lab/fleet.js';
import type { Conversation } from '../../src/chat/conversation.js';
import type { Clock } from '../../src/runtime.js';
import { renderText } from '../../src/bot/render/text.js';
import type { Message } from '../../src/chat/messages.js';

const open: Harness[] = [];
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((h) => h.close()));
});

async function harness(opts: Parameters<typeof makeHarness>[0] = {}): Promise<Harness> {
  const h = await makeHarness(opts);
  open.push(h);
  return h;
}

async function staleOn(h: Harness, host: string): Promise<string[]> {
  return findStalePorts(await h.rt.adapters.forHost(host).npivInventory(host)).map((p) => p.wwpn);
}

async function latestRequest(h: Harness): Promise<{ id: string; plan: PlannedPort[]; status: string; planHash: string }> {
  const id = (await h.rt.redis.get(h.rt.key('approval', 'seq')))!;
  const rec = (await new ApprovalStore(h.rt).get<PlannedPort[]>(id))!;
  return { id, plan: rec.request.plan, status: rec.request.status, planHash: rec.request.planHash };
}

async function statusOf(h: Harness, id: string): Promise<string | undefined> {
  return (await new ApprovalStore(h.rt).get(id))?.request.status;
}

async function removalOp(h: Harness, id: string) {
  return h.waitFor(async () => {
    const rec = await new ApprovalStore(h.rt).get(id);
    const op = rec?.meta.opId ? await h.deps.ops.get(rec.meta.opId) : null;
    return op && ['succeeded', 'partial', 'failed', 'cancelled'].includes(op.status) ? op : undefined;
  }, `removal of request ${id} to finish`);
}

function consoleConv(h: Harness, user: string): Conversation {
  return { surface: 'console', session: h.session, user };
}

/** Click a button as `user` in the harness's console session (the Slack app calls the same handler). */
async function click(h: Harness, action: string, value: string, user: string): Promise<void> {
  const conv = consoleConv(h, user);
  await handleClick(h.deps, action, { channel: 'console', user, conv, value, groupMembers: {}, refuse: async (r) => void (await h.deps.outbox.ephemeral(conv, { text: r.sentence, blocks: [{ type: 'section', text: r.sentence }] })) });
}

async function adapterRemovals(h: Harness, wwpn: string): Promise<number> {
  return (await queryAudit(h.rt, wwpn, { limit: 100 })).filter((e) => e.kind === 'adapter' && e.outcome === 'ok').length;
}

/** Pub/sub delivers ephemerals asynchronously: wait for the one `act` causes. */
async function refusal(h: Harness, user: string, act: () => Promise<void>): Promise<string> {
  const n = h.ephemerals(user).length;
  await act();
  return h.waitFor(async () => h.ephemerals(user)[n], `an ephemeral for @${user}`, 5000);
}

describe('done means, console path', () => {
  it('FerryConsole: sweep → remove → requester refused → approver approves → removed one by one → second sweep finds none → audit', async () => {
    const h = await harness();
    const input = Readable.from(['find stale ports hyp01..hyp04', 'remove stale ports hyp02', 'approve 1', 'as bob approve 1', 'find stale ports hyp02', 'audit hyp02'].map((l) => `${l}\n`));
    const output = new PassThrough();
    let text = '';
    output.on('data', (d: Buffer) => (text += d.toString()));
    const before = await staleOn(h, 'hyp02');
    expect(before.length).toBeGreaterThan(0);
    const con = new FerryConsole(h.deps, { input, output, interactive: false, user: 'alice', lineTimeoutMs: 20_000 });
    const t0 = Date.now();
    await con.run();
    await con.close();
    const ms = Date.now() - t0;
    // The card: who asked, the exact plan, approvals, who may approve, expiry, the no-undo warning, the commands.
    expect(text).toContain('Remove 2 stale ports · request 1');
    expect(text).toContain('Asked by @alice');
    for (const w of before) expect(text).toMatch(new RegExp(`hyp02\\s+${w}\\s+100000C0DD00[AB]0[AB]0\\s+50014380`));
    expect(text).toContain('Approvals needed: 1');
    expect(text).toContain('Who may approve: the approvers group');
    expect(text).toMatch(/Expires: \d\d:\d\d UTC/);
    expect(text).toContain('A removed port cannot be restored: there is no rollback.');
    expect(text).toContain('[Approve…]  → type: approve 1');
    // Four eyes.
    expect(text).toContain('(only @alice) You asked for this; someone else has to approve it.');
    expect(text).toContain('Approved by @bob. Removing the ports now, one by one');
    expect(text).toMatch(/Port 1 of 2: removed C003FF[0-9A-F]{10} on hyp02/);
    expect(text).toMatch(/Port 2 of 2: removed C003FF[0-9A-F]{10} on hyp02/);
    expect(text).toContain('Removal finished (request 1, job 2): 2 of 2 removed.');
    expect(text).toContain('Done: 2 of 2 removed.');
    expect(text).toContain('No stale ports on 1 host.');
    // The audit: request, refused self-approval, approval, each adapter call with who approved it.
    const auditOut = text.slice(text.indexOf('@alice › audit hyp02'));
    expect(auditOut).toMatch(/@alice\s+decision\s+request approval 1/);
    expect(auditOut).toMatch(/@alice\s+decision\s+approve request 1\s+refused/);
    expect(auditOut).toMatch(/@bob\s+decision\s+approve request 1\s+ok\s+2\s+@bob/);
    for (const w of before) expect(auditOut).toMatch(new RegExp(`@alice\\s+adapter\\s+removeVirtualPort ${w}\\s+ok\\s+2\\s+@bob`));
    expect(await staleOn(h, 'hyp02')).toEqual([]);
    console.info(`console done-means flow: ${ms} ms`);
  });

  it('the sweep summary button (console: the same action handler) builds the plan from that sweep', async () => {
    const h = await harness();
    await h.run('find stale ports hyp01..hyp06', 'alice');
    const sweep = await h.waitForOp();
    // The outcome is recorded before the summary is posted: wait for the summary itself.
    const summary = await h.waitFor(async () => h.events.find((e) => e.kind === 'post' && e.message.text.includes('(of 6 swept)')), 'the sweep summary');
    const btn = summary && 'message' in summary ? summary.message.blocks.find((b) => b.type === 'actions') : undefined;
    expect(btn && btn.type === 'actions' ? btn.buttons[0]!.value : '').toBe(String(sweep.id));
    await click(h, 'ferry:remove-stale-ports', String(sweep.id), 'alice');
    const req = await latestRequest(h);
    const expected = [...(await staleOn(h, 'hyp02')), ...(await staleOn(h, 'hyp06'))];
    expect(req.plan.map((p) => p.wwpn).sort()).toEqual(expected.sort());
    // A second click does not make a second request.
    expect(await refusal(h, 'alice', () => click(h, 'ferry:remove-stale-ports', String(sweep.id), 'alice'))).toBe(`Request ${req.id} for this sweep is already waiting for approval; see its card in this thread.`);
    // Someone who may not remove ports cannot open the flow.
    expect(await refusal(h, 'mallory', () => click(h, 'ferry:remove-stale-ports', String(sweep.id), 'mallory'))).toBe('remove stale ports needs the operators group; ask an admin to add you.');
    await h.run(`approve ${req.id}`, 'carol');
    const op = await removalOp(h, req.id);
    expect(op.status).toBe('succeeded');
    await h.run('find stale ports hyp01..hyp06', 'alice');
    await h.waitFor(async () => h.transcript().includes('No stale ports on 6 hosts.'), 'second sweep clean');
  });

  it('named WWPNs must be stale on the selected hosts, or the command is refused by name', async () => {
    const h = await harness();
    const [w] = await staleOn(h, 'hyp02');
    expect(await refusal(h, 'alice', () => h.run(`remove stale ports hyp02 ${w} DEADBEEFDEADBEEF`, 'alice'))).toBe('Not stale, so not removable: DEADBEEFDEADBEEF is not a virtual port on hyp02. Nothing was planned.');
    expect(await h.rt.redis.get(h.rt.key('approval', 'seq'))).toBeNull();
    await h.run(`remove stale ports hyp02 ${w}`, 'alice');
    const req = await latestRequest(h);
    expect(req.plan.map((p) => p.wwpn)).toEqual([w]);
  });
  it('an unreachable host is left out of the plan and named; a WWPN a VM uses is refused with its owner', async () => {
    const h = await harness();
    await setLabFault(h.rt.redis, h.rt.prefix, 'hyp03', 'unreachable');
    await h.run('remove stale ports hyp02,hyp03', 'alice');
    await h.waitFor(async () => /Not reached, so not in the plan: hyp03 did not answer \(connection timed out\)\./.test(h.transcript()), 'unreachable host named');
    const req = await latestRequest(h);
    expect(new Set(req.plan.map((p) => p.host))).toEqual(new Set(['hyp02']));
    const inv = await h.rt.adapters.forHost('hyp02').npivInventory('hyp02');
    const used = Object.entries(inv.endpointOwners ?? {})[0]!;
    expect(await refusal(h, 'alice', () => h.run(`remove stale ports hyp02 ${used[0]}`, 'alice'))).toBe(
      `Not stale, so not removable: ${used[0]} is in use on hyp02 by VM ${used[1]}. Nothing was planned.`,
    );
  });
});

describe('abuse cases', () => {
  it('self-approval: refused with one sentence, nothing changes', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(h);
    expect(await refusal(h, 'alice', () => h.run(`approve ${req.id}`, 'alice'))).toBe('You asked for this; someone else has to approve it.');
    expect(await statusOf(h, req.id)).toBe('pending');
  });

  it('the requester is refused even when listed as an approver', async () => {
    const yaml = fastLabYaml().replace('approvers: [bob, carol]', 'approvers: [alice, bob, carol]');
    const h = await harness({ yaml });
    await h.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(h);
    expect(await refusal(h, 'alice', () => h.run(`approve ${req.id}`, 'alice'))).toBe('You asked for this; someone else has to approve it.');
    expect(await statusOf(h, req.id)).toBe('pending');
  });

  it('approval by a non-approver: refused, button and typed alike', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(h);
    expect(await refusal(h, 'dave', () => h.run(`approve ${req.id}`, 'dave'))).toBe('Only the approvers group may approve or reject this request.');
    expect(await refusal(h, 'dave', () => click(h, 'ferry:approve', `${req.id}:${req.planHash}`, 'dave'))).toBe('Only the approvers group may approve or reject this request.');
    expect(await statusOf(h, req.id)).toBe('pending');
    expect((await staleOn(h, 'hyp02')).length).toBe(2);
  });

  it('approval after expiry (controllable clock): refused, card loses its buttons; the scheduled sweep expires the rest', async () => {
    let now = Date.now();
    const clock: Clock = { now: () => now };
    const h = await harness({ clock });
    await h.run('remove stale ports hyp02', 'alice');
    const a = await latestRequest(h);
    await h.run('remove stale ports hyp06', 'alice');
    const b = await latestRequest(h);
    // The repeatable sweep is registered on the timers queue.
    const schedulers = await h.deps.queues.timers.getJobSchedulers();
    expect(schedulers.map((s) => s.key)).toContain(EXPIRY_JOB);
    now += 31 * 60_000;
    expect(await refusal(h, 'bob', () => h.run(`approve ${a.id}`, 'bob'))).toMatch(/^This request expired at \d\d:\d\d UTC; ask again\.$/);
    expect(await statusOf(h, a.id)).toBe('expired');
    expect(await expireDue(h.deps)).toEqual([b.id]);
    expect(await statusOf(h, b.id)).toBe('expired');
    await h.waitFor(async () => h.transcript().includes(`Request ${b.id} expired at`), 'expiry notice');
    const updates = h.events.filter((e): e is Extract<typeof e, { kind: 'update' }> => e.kind === 'update');
    const lastCard = (id: string) => updates.filter((u) => u.message.text.startsWith(`Approval request ${id}:`)).at(-1)!.message;
    for (const id of [a.id, b.id]) {
      expect(lastCard(id).blocks.some((bl) => bl.type === 'actions')).toBe(false);
      expect(renderText(lastCard(id))).toContain('without enough approvals');
    }
    expect((await staleOn(h, 'hyp02')).length).toBe(2);
  });

  it('approval of a plan that changed: the old card\'s approval is void; nothing removed', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(h);
    // Re-planned under the card (e.g. one port dropped): stored plan and hash change.
    const key = h.rt.key('approval', req.id);
    const stored = JSON.parse((await h.rt.redis.hget(key, 'json'))!) as { plan: PlannedPort[]; planHash: string };
    stored.plan = stored.plan.slice(0, 1);
    stored.planHash = planHash(stored.plan);
    await h.rt.redis.hset(key, 'json', JSON.stringify(stored));
    expect(await refusal(h, 'bob', () => click(h, 'ferry:approve', `${req.id}:${req.planHash}`, 'bob'))).toBe('The plan changed since this card was shown; the approval is void.');
    expect(await statusOf(h, req.id)).toBe('void');
    await h.waitFor(async () => h.transcript().includes(`Request ${req.id} is void: the plan changed after the card was shown; nothing was removed.`), 'void notice');
    expect(await refusal(h, 'carol', () => h.run(`approve ${req.id}`, 'carol'))).toBe('This request is void (the plan changed after the card was shown); ask again.');
    expect((await staleOn(h, 'hyp02')).length).toBe(2);
  });

  it('a plan altered in storage without its hash: a typed approve voids too', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(h);
    const key = h.rt.key('approval', req.id);
    const stored = JSON.parse((await h.rt.redis.hget(key, 'json'))!) as { plan: PlannedPort[] };
    stored.plan[0]!.wwpn = 'C003FF0000000000';
    await h.rt.redis.hset(key, 'json', JSON.stringify(stored));
    expect(await refusal(h, 'bob', () => h.run(`approve ${req.id}`, 'bob'))).toBe('The plan changed since this card was shown; the approval is void.');
    expect(await statusOf(h, req.id)).toBe('void');
  });

  it('an interaction naming an unknown approval: one sentence, nothing happens', async () => {
    const h = await harness();
    expect(await refusal(h, 'bob', () => click(h, 'ferry:approve', '4242:0000', 'bob'))).toBe('There is no approval request 4242; nothing was done.');
    expect(await refusal(h, 'bob', () => h.run('approve 4243', 'bob'))).toBe('There is no approval request 4243; nothing was done.');
    expect(await h.deps.ops.recent(10)).toHaveLength(0);
  });

  it('two approvers racing, N=1: exactly one approval and one execution', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(h);
    const refusals: string[] = [];
    const results = await Promise.all(
      ['bob', 'carol', 'bob', 'carol'].map((user) =>
        decideApproval(h.deps, { id: req.id, user, decision: 'approve', planHash: req.planHash, groupMembers: {}, via: 'button' }),
      ),
    );
    for (const r of results) if (r.refused) refusals.push(r.sentence);
    const approved = results.filter((r) => !r.refused && r.effect === 'approved');
    expect(approved).toHaveLength(1);
    expect(refusals).toHaveLength(3);
    for (const s of refusals) expect(s).toMatch(/^Already approved by @(bob|carol); nothing to do\.$/);
    const op = await removalOp(h, req.id);
    expect(op.status).toBe('succeeded');
    for (const p of req.plan) expect(await adapterRemovals(h, p.wwpn)).toBe(1);
    expect((await h.deps.ops.recent(10)).filter((o) => o.kind === 'remove-stale-ports')).toHaveLength(1);
  });

  it('two approvers racing, N=2: both approvals count, one execution', async () => {
    const yaml = `${fastLabYaml()}approvals:\n  remove-ports:\n    approvals: 2\n    approvers: [group:approvers]\n    expiry: 30m\n`;
    const h = await harness({ yaml });
    await h.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(h);
    const refusals: string[] = [];
    const results = await Promise.all(
      ['bob', 'carol'].map((user) => decideApproval(h.deps, { id: req.id, user, decision: 'approve', planHash: req.planHash, groupMembers: {}, via: 'button' })),
    );
    for (const r of results) if (r.refused) refusals.push(r.sentence);
    expect(refusals).toEqual([]);
    expect(results.map((r) => (r.refused ? r.code : r.effect)).sort()).toEqual(['approved', 'recorded']);
    const rec = (await new ApprovalStore(h.rt).get(req.id))!;
    expect(rec.request.decisions.map((d) => d.user).sort()).toEqual(['bob', 'carol']);
    const op = await removalOp(h, req.id);
    expect(op.status).toBe('succeeded');
    for (const p of req.plan) expect(await adapterRemovals(h, p.wwpn)).toBe(1);
    await h.waitForText(/Approval 1 of 2 recorded from @(bob|carol); one more is needed from the approvers group\./);
    await h.waitForText(/Approved by @(bob|carol) and @(bob|carol)\./);
  });

  it('the same approval delivered three times (console: typed thrice): executes once', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(h);
    await h.run(`approve ${req.id}`, 'bob');
    for (let i = 0; i < 2; i++) {
      expect(await refusal(h, 'bob', () => h.run(`approve ${req.id}`, 'bob'))).toMatch(/^Already approved by @bob(| and carried out); nothing to do\.$/);
    }
    await removalOp(h, req.id);
    for (const p of req.plan) expect(await adapterRemovals(h, p.wwpn)).toBe(1);
  });

  it('a restart between request and approval: new runtime, deps and workers over the same Redis', async () => {
    const prefix = uniquePrefix('appr-restart');
    const first = await makeHarness({ prefix });
    await first.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(first);
    await first.close();
    const second = await harness({ prefix });
    await second.run(`approve ${req.id}`, 'bob');
    const op = await removalOp(second, req.id);
    expect(op.status).toBe('succeeded');
    expect(await staleOn(second, 'hyp02')).toEqual([]);
  });

  it('a port a VM attached in the meantime is skipped with the reason; the others are removed', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(h);
    const taken = req.plan[0]!;
    // A running VM on hyp02 now logs in with that WWPN (e.g. its B address after a migration).
    const key = `${h.rt.prefix}:lab:host:hyp02`;
    const state = JSON.parse((await h.rt.redis.get(key))!) as LabHostState;
    const vm = state.vms.find((v) => v.power === 'running')!;
    vm.vfc.push({ name: 'Fibre Channel Adapter 9', fabric: taken.fabric, wwnn: 'C003FF0000000001', wwpns: [taken.wwpn] });
    await h.rt.redis.set(key, JSON.stringify(state));
    await h.run(`approve ${req.id}`, 'bob');
    const op = await removalOp(h, req.id);
    expect(op.status).toBe('succeeded');
    const t = h.transcript();
    expect(t).toContain(`Port 1 of 2 skipped: ${taken.wwpn} on hyp02 is now in use by VM ${vm.name}; left in place.`);
    expect(t).toMatch(/Port 2 of 2: removed C003FF[0-9A-F]{10} on hyp02/);
    await h.waitFor(async () => h.transcript().includes('Removal finished (request 1, job 1): 1 of 2 removed, 1 skipped.'), 'summary');
    const inv = await h.rt.adapters.forHost('hyp02').npivInventory('hyp02');
    expect(inv.virtualPorts.some((p) => p.wwpn === taken.wwpn)).toBe(true);
    const skipped = (await queryAudit(h.rt, taken.wwpn)).find((e) => e.kind === 'adapter');
    expect(skipped?.outcome).toBe('skipped');
  });

  it('partial failure: "port 3 of 3 failed: why", the others go on, the card and the job say partial', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02,hyp06', 'alice');
    const req = await latestRequest(h);
    expect(req.plan.map((p) => p.host)).toEqual(['hyp02', 'hyp02', 'hyp06']);
    await setLabFault(h.rt.redis, h.rt.prefix, 'hyp06', 'fail:remove');
    await h.run(`approve ${req.id}`, 'carol');
    const op = await removalOp(h, req.id);
    expect(op.status).toBe('partial');
    await h.waitForText(`Port 3 of 3 failed: ${req.plan[2]!.wwpn}: hyp06 answered with an error (hyp06: remove failed (injected fault)). The other ports go on.`);
    expect(op.summary).toBe('2 of 3 removed, 1 failed.');
    await h.waitFor(async () => h.transcript().includes('Done: 2 of 3 removed, 1 failed.'), 'final card');
    expect((await queryAudit(h.rt, req.plan[2]!.wwpn)).find((e) => e.kind === 'adapter')?.outcome).toBe('failed');
  });

  it('a removal that errors after the port is gone is reported removed, not failed', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(h);
    expect(req.plan).toHaveLength(2);
    // The platform removes the first port, then the call errors (a timeout after the fact).
    const adapter = h.rt.adapters.forHost('hyp02');
    const original = adapter.removeVirtualPort.bind(adapter);
    let calls = 0;
    adapter.removeVirtualPort = async (port, opts) => {
      await original(port, opts);
      if (++calls === 1) throw new Error('the call timed out after the port was removed');
    };
    await h.run(`approve ${req.id}`, 'carol');
    const op = await removalOp(h, req.id);
    adapter.removeVirtualPort = original;
    expect(op.status).toBe('succeeded');
    expect(op.summary).toBe('2 of 2 removed.');
    await h.waitForText(`Port 1 of 2: removed ${req.plan[0]!.wwpn} on hyp02`);
    expect((await staleOn(h, 'hyp02')).length).toBe(0);
    const entry = (await queryAudit(h.rt, req.plan[0]!.wwpn)).find((e) => e.kind === 'adapter');
    expect(entry?.outcome).toBe('ok');
    expect(entry?.detail).toMatch(/the port is gone on re-check/);
  });

  it('reject with a reason: card updated, nothing removed, the job never runs', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(h);
    await h.run(`reject ${req.id} wrong host`, 'carol');
    expect(await statusOf(h, req.id)).toBe('rejected');
    await h.waitFor(async () => h.transcript().includes('Rejected by @carol: wrong host.'), 'rejection');
    expect(await refusal(h, 'bob', () => h.run(`approve ${req.id}`, 'bob'))).toBe('Already rejected by @carol; nothing to do.');
    expect((await staleOn(h, 'hyp02')).length).toBe(2);
  });
});

describe('kill switch', () => {
  it('pause all: approvers only, refuses mutating commands with who and when, holds the queues; resume all lifts it', async () => {
    const h = await harness();
    expect(await refusal(h, 'alice', () => h.run('pause all', 'alice'))).toBe('pause all needs the approvers group; ask an admin to add you.');
    await h.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(h);
    await h.run('pause all', 'bob');
    await h.waitFor(async () => /Ferry is paused by @bob at \d\d:\d\d UTC/.test(h.transcript()), 'pause announcement');
    expect(await h.deps.queues.ops.isPaused()).toBe(true);
    expect(await h.deps.queues.hosts.isPaused()).toBe(true);
    expect(await refusal(h, 'alice', () => h.run('remove stale ports hyp06', 'alice'))).toMatch(/^Ferry is paused: @bob paused Ferry at \d\d:\d\d UTC \(pause all\); nothing new that changes anything runs until someone types resume all\.$/);
    expect(await refusal(h, 'carol', () => h.run(`approve ${req.id}`, 'carol'))).toMatch(/^Ferry is paused: @bob paused Ferry at/);
    expect(await statusOf(h, req.id)).toBe('pending');
    // Read-only commands still answer.
    await h.run('audit hyp02', 'alice');
    await h.waitFor(async () => h.transcript().includes('Audit: hyp02'), 'audit answer');
    await h.run('resume all', 'carol');
    expect(await h.deps.queues.ops.isPaused()).toBe(false);
    await h.run(`approve ${req.id}`, 'carol');
    expect((await removalOp(h, req.id)).status).toBe('succeeded');
  });

  it('a removal approved before the pause stops between ports and finishes after resume all', async () => {
    const h = await harness({ yaml: fastLabYaml('', { latencyMs: 150, migrationMs: 100 }) });
    await h.run('remove stale ports hyp02,hyp06', 'alice');
    const req = await latestRequest(h);
    await h.run(`approve ${req.id}`, 'bob');
    await h.waitFor(async () => h.transcript().includes('Port 1 of 3'), 'the first port', 10_000);
    await h.run('pause all', 'bob');
    const held = await h.waitFor(async () => /Held: @bob paused Ferry at \d\d:\d\d UTC; ports (\d)–3 wait for resume all\./.exec(h.transcript()), 'hold notice', 10_000);
    const firstHeld = Number(held[1]);
    expect(firstHeld).toBeGreaterThan(1);
    const rec = (await new ApprovalStore(h.rt).get(req.id))!;
    await new Promise((r) => setTimeout(r, 1000));
    expect(Object.keys(await h.deps.ops.results(rec.meta.opId!))).toHaveLength(firstHeld - 1);
    await h.run('resume all', 'bob');
    const op = await removalOp(h, req.id);
    expect(op.status).toBe('succeeded');
    for (const p of req.plan) expect(await adapterRemovals(h, p.wwpn)).toBe(1);
  });
});

describe('audit', () => {
  it('audit <job> lists the removal job\'s entries; unknown targets get a sentence', async () => {
    const h = await harness();
    await h.run('remove stale ports hyp02', 'alice');
    const req = await latestRequest(h);
    await h.run(`approve ${req.id}`, 'bob');
    const op = await removalOp(h, req.id);
    await h.run(`audit ${op.id}`, 'dave');
    await h.waitFor(async () => h.transcript().includes(`Audit: job ${op.id}`), 'audit');
    const post = h.events.filter((e) => e.kind === 'post').map((e) => e.message as Message).find((m) => m.text.startsWith(`Audit: job ${op.id}`))!;
    const table = post.blocks.find((b) => b.type === 'table');
    expect(table && table.type === 'table' ? table.rows.map((r) => `${r[2]} ${r[3]} ${r[4]}`) : []).toEqual(
      expect.arrayContaining([`decision approve request ${req.id} ok`, ...req.plan.map((p) => `adapter removeVirtualPort ${p.wwpn} ok`)]),
    );
    // The audit command is itself a command, so it is the one entry about a quiet host.
    await h.run('audit hyp77', 'dave');
    await h.waitFor(async () => /Audit: hyp77, 1 entry[\s\S]*@dave\s+command\s+audit hyp77\s+started/.test(h.transcript()), 'audit of a quiet host');
  });
});
