/**
 * Approvals through Slack end to end: correctly signed slash commands and block_actions /
 * view_submission payloads to Ferry's real HTTP receiver, real Redis and BullMQ workers, the
 * lab adapter, and nock playing the Web API (asserting what is posted, updated, said
 * ephemerally and opened as a modal).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fastLabYaml, uniquePrefix, type Harness } from '../support/harness.js';
import { callText, interactionBody, mockSlackApi, postSigned, sign, slashBody, type SlackCall } from '../support/slack.js';
import { startSlackFerry, type SlackFerry } from '../support/slack-receiver.js';
import { ApprovalStore, type ApprovalRecord } from '../../src/approvals/store.js';
import { queryAudit } from '../../src/audit/audit.js';
import { findStalePorts } from '../../src/core/stale-ports.js';
import type { PlannedPort } from '../../src/approvals/cards.js';
import { timeBound } from '../support/speed.js';

const YAML = fastLabYaml().replace('operators: [alice, bob, carol, dave]', 'operators: [U0ALICE, U0BOB, U0CAROL, U0DAVE]').replace('approvers: [bob, carol]', 'approvers: [U0BOB, U0CAROL]');

const startFerry = (prefix = uniquePrefix('appr-slack')): Promise<SlackFerry> => startSlackFerry({ yaml: YAML, prefix });

let slack: ReturnType<typeof mockSlackApi>;
let actionSeq = 0;

beforeAll(() => {
  slack = mockSlackApi();
});
afterAll(() => slack.done());

const since = (t: number) => slack.calls.filter((c) => c.at >= t);
const blocksOf = (c: SlackCall) => (c.body.blocks as { type: string; elements?: { action_id?: string; value?: string; confirm?: unknown }[] }[] | undefined) ?? [];
const buttonsOf = (c: SlackCall) => blocksOf(c).flatMap((b) => (b.type === 'actions' ? (b.elements ?? []) : []));

function blockActions(user: string, actionId: string, value: string, where: { channel?: string; messageTs: string; threadTs?: string }, actionTs = `1700000000.${String(++actionSeq).padStart(6, '0')}`): string {
  return interactionBody({
    type: 'block_actions',
    user: { id: user, username: user.toLowerCase(), team_id: 'T1' },
    api_app_id: 'A1',
    token: 'legacy',
    container: { type: 'message', message_ts: where.messageTs, channel_id: where.channel ?? 'C0OPS', is_ephemeral: false },
    trigger_id: `${Date.now()}.${++actionSeq}.abc`,
    team: { id: 'T1', domain: 'acme' },
    channel: { id: where.channel ?? 'C0OPS', name: 'ops' },
    message: { type: 'message', ts: where.messageTs, ...(where.threadTs ? { thread_ts: where.threadTs } : {}), text: '' },
    response_url: 'http://slack.test/actions/1',
    actions: [{ action_id: actionId, block_id: 'b1', value, type: 'button', action_ts: actionTs, text: { type: 'plain_text', text: 'x' } }],
  });
}

async function waitCall(h: Harness, t0: number, what: string, pred: (c: SlackCall) => boolean, timeoutMs = 20_000): Promise<SlackCall> {
  return h.waitFor(async () => since(t0).find(pred), what, timeoutMs);
}

async function staleOn(h: Harness, host: string): Promise<string[]> {
  return findStalePorts(await h.rt.adapters.forHost(host).npivInventory(host)).map((p) => p.wwpn);
}

/** /ferry remove stale ports <hosts> as alice; the request and where its card is. */
async function requestVia(f: SlackFerry, hosts: string): Promise<{ rec: ApprovalRecord<PlannedPort[]>; value: string; where: { messageTs: string; threadTs: string } }> {
  const t0 = Date.now();
  const seq0 = Number((await f.h.rt.redis.get(f.h.rt.key('approval', 'seq'))) ?? 0);
  expect((await postSigned(f.port, slashBody(`remove stale ports ${hosts}`))).status).toBe(200);
  const card = await waitCall(f.h, t0, 'approval card', (c) => c.method === 'chat.postMessage' && buttonsOf(c).some((b) => b.action_id === 'ferry:approve'));
  const rec = await withCard(f.h, String(seq0 + 1));
  const value = buttonsOf(card).find((b) => b.action_id === 'ferry:approve')!.value!;
  const conv = rec.meta.conv;
  // A click carries Slack's ts of the card and its thread; Ferry knows them by outbox refs.
  const slackTs = async (ts: string) => (await f.h.waitFor(() => f.h.deps.slackOutbox!.resolve({ channel: 'C0OPS', ts }), `Slack's ts for ${ts}`)).ts;
  return { rec, value, where: { messageTs: await slackTs(rec.meta.cardRef!.ts), threadTs: conv.surface === 'slack' ? await slackTs(conv.threadTs!) : '' } };
}

/** The request once its card is recorded (the post returns before the store notes where it went). */
async function withCard(h: Harness, id: string): Promise<ApprovalRecord<PlannedPort[]>> {
  return h.waitFor(async () => {
    const rec = await new ApprovalStore(h.rt).get<PlannedPort[]>(id);
    return rec?.meta.cardRef ? rec : undefined;
  }, `card of request ${id}`);
}

async function statusOf(h: Harness, id: string): Promise<string | undefined> {
  return (await new ApprovalStore(h.rt).get(id))?.request.status;
}

async function removalFinished(h: Harness, id: string) {
  return h.waitFor(async () => {
    const rec = await new ApprovalStore(h.rt).get(id);
    const op = rec?.meta.opId ? await h.deps.ops.get(rec.meta.opId) : null;
    return op && ['succeeded', 'partial', 'failed', 'cancelled'].includes(op.status) ? op : undefined;
  }, `removal of request ${id}`, 30_000);
}

async function ephemeralTo(h: Harness, t0: number, user: string): Promise<string> {
  return String((await waitCall(h, t0, `ephemeral to ${user}`, (c) => c.method === 'chat.postEphemeral' && c.body.user === user)).body.text);
}

describe('done means, Slack path', () => {
  let f: SlackFerry;
  beforeAll(async () => {
    f = await startFerry();
  });
  afterAll(async () => f.close());

  it('sweep → button → requester refused → approver approves → removed one by one → second sweep clean → audit', async () => {
    const { h, port } = f;
    const started = Date.now();
    const before = await staleOn(h, 'hyp02');
    expect(before).toHaveLength(2);

    // 1. The sweep, and its summary's button.
    let t0 = Date.now();
    expect((await postSigned(port, slashBody('find stale ports hyp01..hyp04'))).status).toBe(200);
    const summary = await waitCall(h, t0, 'sweep summary', (c) => c.method === 'chat.postMessage' && buttonsOf(c).some((b) => b.action_id === 'ferry:remove-stale-ports'));
    const sweepBtn = buttonsOf(summary).find((b) => b.action_id === 'ferry:remove-stale-ports')!;
    const rootTs = String(summary.body.thread_ts);

    // 2. Alice clicks "Remove 2 stale ports…": the approval card, in the thread.
    t0 = Date.now();
    const click = await postSigned(port, blockActions('U0ALICE', 'ferry:remove-stale-ports', sweepBtn.value!, { messageTs: '1.1', threadTs: rootTs }));
    expect(click.status).toBe(200);
    const ack = timeBound(1000);
    expect(click.ms, ack.why).toBeLessThan(ack.ms);
    const card = await waitCall(h, t0, 'approval card', (c) => c.method === 'chat.postMessage' && buttonsOf(c).some((b) => b.action_id === 'ferry:approve'));
    expect(card.body.channel).toBe('C0OPS');
    expect(card.body.thread_ts).toBe(rootTs);
    const text = callText(card);
    expect(text).toContain('Asked by <@U0ALICE>');
    for (const w of before) expect(text).toMatch(new RegExp(`hyp02\\s+${w}\\s+100000C0DD00[AB]0[AB]0`));
    expect(text).toContain('*Approvals needed*\n1');
    expect(text).toContain('*Who may approve*\nthe approvers group');
    expect(text).toMatch(/\*Expires\*\n\d\d:\d\d UTC/);
    expect(text).toContain('A removed port cannot be restored: there is no rollback.');
    const approveBtn = buttonsOf(card).find((b) => b.action_id === 'ferry:approve')!;
    expect(approveBtn.confirm).toMatchObject({ confirm: { text: 'Remove 2 ports' }, deny: { text: 'Back' } });
    const seq = (await h.rt.redis.get(h.rt.key('approval', 'seq')))!;
    const rec = await withCard(h, seq);
    const cardTs = (await h.waitFor(() => h.deps.slackOutbox!.resolve(rec.meta.cardRef!), "the card's Slack ts")).ts;

    // 3. Alice approves her own request: one ephemeral sentence, nothing changes.
    t0 = Date.now();
    await postSigned(port, blockActions('U0ALICE', 'ferry:approve', approveBtn.value!, { messageTs: cardTs, threadTs: rootTs }));
    expect(await ephemeralTo(h, t0, 'U0ALICE')).toBe('You asked for this; someone else has to approve it.');
    expect(await statusOf(h, seq)).toBe('pending');

    // 4. Bob approves: the card updates in place, each port is reported, the card ends with the summary.
    t0 = Date.now();
    await postSigned(port, blockActions('U0BOB', 'ferry:approve', approveBtn.value!, { messageTs: cardTs, threadTs: rootTs }));
    await waitCall(h, t0, 'approval sentence', (c) => c.method === 'chat.postMessage' && /^Approved by <@U0BOB>\. Removing the ports now, one by one \(job \d+\)\.$/.test(String(c.body.text)));
    await waitCall(h, t0, 'final card', (c) => c.method === 'chat.update' && c.body.ts === cardTs && callText(c).includes('*Done:* 2 of 2 removed.')).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${since(t0).map((c) => `${c.method} ${String(c.body.ts ?? '')}: ${callText(c)}`).join('\n---\n')}`);
    });
    await waitCall(h, t0, 'summary post', (c) => c.method === 'chat.postMessage' && /^Removal finished \(request \d+, job \d+\): 2 of 2 removed\.$/.test(String(c.body.text)));
    const calls = since(t0);
    const portPosts = calls.filter((c) => c.method === 'chat.postMessage' && /^Port \d of 2/.test(String(c.body.text)));
    expect(portPosts.map((c) => String(c.body.text).replace(/C003FF[0-9A-F]{10}/, 'W'))).toEqual([
      'Port 1 of 2: removed W on hyp02 (fabric 100000C0DD00A0A0).',
      'Port 2 of 2: removed W on hyp02 (fabric 100000C0DD00B0B0).',
    ]);
    for (const c of portPosts) expect(c.body.thread_ts).toBe(rootTs);
    const updates = calls.filter((c) => c.method === 'chat.update' && c.body.ts === cardTs);
    expect(updates.length).toBeGreaterThan(0);
    for (const u of updates) expect(buttonsOf(u)).toEqual([]);
    expect(callText(updates.at(-1)!)).toContain('✓ approved by <@U0BOB>');
    expect(await staleOn(h, 'hyp02')).toEqual([]);

    // 5. A second sweep finds none of them.
    t0 = Date.now();
    await postSigned(port, slashBody('find stale ports hyp02'));
    const again = await waitCall(h, t0, 'second sweep', (c) => c.method === 'chat.postMessage' && String(c.body.text).startsWith('No stale ports'));
    expect(String(again.body.text)).toBe('No stale ports on 1 host.');

    // 6. All of it in `audit hyp02`, in Slack.
    // An immediate answer: the ack body itself, only Dave sees it.
    const auditAck = await postSigned(port, slashBody('audit hyp02', { user: 'U0DAVE' }));
    const auditBody = JSON.parse(auditAck.text) as Record<string, unknown>;
    expect(auditBody.response_type).toBe('ephemeral');
    expect(String(auditBody.text)).toMatch(/^Audit: hyp02/);
    const at = callText({ method: 'ack', body: auditBody, at: 0 });
    expect(at).toMatch(/<@U0ALICE>\s+decision\s+approve request \d+\s+refused/);
    expect(at).toMatch(/<@U0BOB>\s+decision\s+approve request \d+\s+ok/);
    for (const w of before) expect(at).toMatch(new RegExp(`<@U0ALICE>\\s+adapter\\s+removeVirtualPort ${w}\\s+ok\\s+\\d+\\s+<@U0BOB>`));
    console.info(`slack done-means flow: ${Date.now() - started} ms`);
  });
});

describe('abuse cases over the real receiver', () => {
  let f: SlackFerry;
  beforeAll(async () => {
    f = await startFerry();
  });
  afterAll(async () => f.close());

  it('a forged or unsigned interaction payload gets 401 and changes nothing', async () => {
    const { rec, value, where } = await requestVia(f, 'hyp06');
    const body = blockActions('U0BOB', 'ferry:approve', value, where);
    expect((await postSigned(f.port, body, { signature: null })).status).toBe(401);
    expect((await postSigned(f.port, body, { signature: sign(body, undefined, 'forged-secret') })).status).toBe(401);
    // A correctly signed body with the approver swapped in afterwards: the signature no longer matches.
    const tampered = body.replace('U0BOB', 'U0CAR');
    expect((await postSigned(f.port, tampered, { signature: sign(body) })).status).toBe(401);
    expect((await postSigned(f.port, body, { signature: sign(body, Math.floor(Date.now() / 1000) - 600) })).status).toBe(401);
    await new Promise((r) => setTimeout(r, 300));
    expect(await statusOf(f.h, rec.request.id)).toBe('pending');
    expect((await staleOn(f.h, 'hyp06')).length).toBe(1);
  });

  it('an interaction naming an unknown approval: an ephemeral sentence, nothing happens', async () => {
    const t0 = Date.now();
    const ops = (await f.h.deps.ops.recent(100)).length;
    await postSigned(f.port, blockActions('U0BOB', 'ferry:approve', '9999:deadbeef', { messageTs: '5.5' }));
    expect(await ephemeralTo(f.h, t0, 'U0BOB')).toBe('There is no approval request 9999; nothing was done.');
    await new Promise((r) => setTimeout(r, 200));
    expect(since(t0).filter((c) => c.method !== 'chat.postEphemeral' && c.method !== 'auth.test')).toEqual([]);
    expect((await f.h.deps.ops.recent(100)).length).toBe(ops);
  });

  it('a non-approver: ephemeral sentence for Approve, and Reject opens no modal', async () => {
    const { rec, value, where } = await requestVia(f, 'hyp12');
    let t0 = Date.now();
    await postSigned(f.port, blockActions('U0DAVE', 'ferry:approve', value, where));
    expect(await ephemeralTo(f.h, t0, 'U0DAVE')).toBe('Only the approvers group may approve or reject this request.');
    t0 = Date.now();
    await postSigned(f.port, blockActions('U0DAVE', 'ferry:reject', value, where));
    expect(await ephemeralTo(f.h, t0, 'U0DAVE')).toBe('Only the approvers group may approve or reject this request.');
    expect(since(t0).some((c) => c.method === 'views.open')).toBe(false);
    expect(await statusOf(f.h, rec.request.id)).toBe('pending');
  });

  it('the same click delivered three times (X-Slack-Retry-Num, same action_ts): executes once', async () => {
    const { rec, value, where } = await requestVia(f, 'hyp08');
    const t0 = Date.now();
    const body = blockActions('U0CAROL', 'ferry:approve', value, where, '1700000999.000001');
    const res = [
      await postSigned(f.port, body),
      await postSigned(f.port, body, { headers: { 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' } }),
      await postSigned(f.port, body, { headers: { 'x-slack-retry-num': '2', 'x-slack-retry-reason': 'http_timeout' } }),
    ];
    expect(res.map((r) => r.status)).toEqual([200, 200, 200]);
    const op = await removalFinished(f.h, rec.request.id);
    expect(op.status).toBe('succeeded');
    const decisions = (await queryAudit(f.h.rt, 'hyp08', { limit: 100 })).filter((e) => e.kind === 'decision' && e.action === `approve request ${rec.request.id}`);
    expect(decisions).toHaveLength(1);
    for (const p of rec.request.plan) expect((await queryAudit(f.h.rt, p.wwpn)).filter((e) => e.kind === 'adapter' && e.outcome === 'ok')).toHaveLength(1);
    // The retries were dropped before any handler: no "already approved" ephemeral either.
    await waitCall(f.h, t0, 'the approval sentence', (c) => c.method === 'chat.postMessage' && String(c.body.text).startsWith('Approved by'));
    expect(since(t0).filter((c) => c.method === 'chat.postEphemeral')).toEqual([]);
    expect(since(t0).filter((c) => c.method === 'chat.postMessage' && String(c.body.text).startsWith('Approved by'))).toHaveLength(1);
  });

  it('two approvers racing (N=1): exactly one execution, the other told it is already approved', async () => {
    // hyp08 was emptied above; the first harness still has hyp02's neighbours: use hyp10..hyp30.
    const candidates = ['hyp14', 'hyp15', 'hyp16', 'hyp17', 'hyp18', 'hyp19', 'hyp20', 'hyp21', 'hyp22', 'hyp23', 'hyp24'];
    let host = '';
    for (const c of candidates) if ((await staleOn(f.h, c)).length) host = host || c;
    expect(host).not.toBe('');
    const { rec, value, where } = await requestVia(f, host);
    const t0 = Date.now();
    await Promise.all([postSigned(f.port, blockActions('U0BOB', 'ferry:approve', value, where)), postSigned(f.port, blockActions('U0CAROL', 'ferry:approve', value, where))]);
    const op = await removalFinished(f.h, rec.request.id);
    expect(op.status).toBe('succeeded');
    const eph = await waitCall(f.h, t0, 'loser told', (c) => c.method === 'chat.postEphemeral');
    expect(String(eph.body.text)).toMatch(/^Already approved by <@U0(BOB|CAROL)>(| and carried out); nothing to do\.$/);
    await waitCall(f.h, t0, 'the approval sentence', (c) => c.method === 'chat.postMessage' && String(c.body.text).startsWith('Approved by'));
    expect(since(t0).filter((c) => c.method === 'chat.postMessage' && String(c.body.text).startsWith('Approved by'))).toHaveLength(1);
    for (const p of rec.request.plan) expect((await queryAudit(f.h.rt, p.wwpn)).filter((e) => e.kind === 'adapter' && e.outcome === 'ok')).toHaveLength(1);
  });

  it('Reject opens a modal; its submission with a reason rejects, the card updates and loses its buttons', async () => {
    const { rec, value, where } = await requestVia(f, 'hyp02,hyp06');
    let t0 = Date.now();
    await postSigned(f.port, blockActions('U0CAROL', 'ferry:reject', value, where));
    const open = await waitCall(f.h, t0, 'views.open', (c) => c.method === 'views.open');
    const view = open.body.view as { callback_id: string; private_metadata: string; blocks: { block_id?: string }[] };
    expect(view.callback_id).toBe('ferry:reject');
    expect(view.blocks.some((b) => b.block_id === 'reason')).toBe(true);
    expect(await statusOf(f.h, rec.request.id)).toBe('pending');
    t0 = Date.now();
    const submission = interactionBody({
      type: 'view_submission',
      team: { id: 'T1', domain: 'acme' },
      user: { id: 'U0CAROL', username: 'carol', team_id: 'T1' },
      api_app_id: 'A1',
      token: 'legacy',
      trigger_id: `${Date.now()}.view.1`,
      view: {
        id: 'V1',
        team_id: 'T1',
        type: 'modal',
        callback_id: 'ferry:reject',
        private_metadata: view.private_metadata,
        state: { values: { reason: { reason: { type: 'plain_text_input', value: 'hyp06 is being recabled' } } } },
        hash: 'h1',
        title: { type: 'plain_text', text: 'Reject' },
        blocks: [],
      },
    });
    expect((await postSigned(f.port, submission)).status).toBe(200);
    await waitCall(f.h, t0, 'rejection sentence', (c) => c.method === 'chat.postMessage' && c.body.text === 'Rejected by <@U0CAROL>: hyp06 is being recabled.');
    const upd = await waitCall(f.h, t0, 'card update', (c) => c.method === 'chat.update' && c.body.ts === where.messageTs);
    expect(callText(upd)).toContain('Rejected by <@U0CAROL>: hyp06 is being recabled');
    expect(buttonsOf(upd)).toEqual([]);
    expect(await statusOf(f.h, rec.request.id)).toBe('rejected');
    // A late click on the old card.
    t0 = Date.now();
    await postSigned(f.port, blockActions('U0BOB', 'ferry:approve', value, where));
    expect(await ephemeralTo(f.h, t0, 'U0BOB')).toBe('Already rejected by <@U0CAROL>; nothing to do.');
  });
});

describe('a restart between request and approval (Slack)', () => {
  it('new runtime, deps and receiver over the same Redis: the old card\'s Approve works', async () => {
    const prefix = uniquePrefix('appr-slack-restart');
    const first = await startFerry(prefix);
    let req: Awaited<ReturnType<typeof requestVia>>;
    try {
      req = await requestVia(first, 'hyp06');
    } finally {
      await first.close();
    }
    const second = await startFerry(prefix);
    try {
      const t0 = Date.now();
      await postSigned(second.port, blockActions('U0BOB', 'ferry:approve', req.value, req.where));
      const op = await removalFinished(second.h, req.rec.request.id);
      expect(op.status).toBe('succeeded');
      await waitCall(second.h, t0, 'final card', (c) => c.method === 'chat.update' && c.body.ts === req.where.messageTs && callText(c).includes('*Done:* 1 of 1 removed.'));
      expect(await staleOn(second.h, 'hyp06')).toEqual([]);
    } finally {
      await second.close();
    }
  });
});

describe('kill switch (Slack)', () => {
  it('pause all is announced in the announcements channel, refuses new mutating commands with who and when; resume all lifts it', async () => {
    const prefix = uniquePrefix('appr-slack-pause');
    const { h, port, close } = await startSlackFerry({ yaml: `${YAML}channels:\n  announcements: C0ANNOUNCE\n`, prefix });
    try {
      let t0 = Date.now();
      // Refusals of slash commands are the ack body itself (ephemeral, no Web API call).
      const refused = await postSigned(port, slashBody('pause all', { user: 'U0ALICE' }));
      expect(JSON.parse(refused.text)).toMatchObject({ response_type: 'ephemeral', text: 'pause all needs the approvers group; ask in <#C0ANNOUNCE> or an admin to add you.' });
      t0 = Date.now();
      await postSigned(port, slashBody('pause all', { user: 'U0BOB' }));
      const announced = await waitCall(h, t0, 'announcement', (c) => c.method === 'chat.postMessage' && c.body.channel === 'C0ANNOUNCE');
      expect(String(announced.body.text)).toMatch(/^:octagonal_sign: \*Ferry is paused\* by <@U0BOB> at \d\d:\d\d UTC\. Running steps finish; nothing new that changes a host starts until resume all\.$/);
      await waitCall(h, t0, 'answer in the conversation', (c) => c.method === 'chat.postMessage' && c.body.channel === 'C0OPS' && String(c.body.text).includes('Ferry is paused'));
      expect(await h.deps.queues.ops.isPaused()).toBe(true);
      t0 = Date.now();
      const paused = await postSigned(port, slashBody('remove stale ports hyp02', { user: 'U0ALICE' }));
      expect(JSON.parse(paused.text).text).toMatch(/^Ferry is paused: <@U0BOB> paused Ferry at \d\d:\d\d UTC \(pause all\); nothing new that changes anything runs until someone types resume all\.$/);
      expect(await h.rt.redis.get(h.rt.key('approval', 'seq'))).toBeNull();
      t0 = Date.now();
      await postSigned(port, slashBody('resume all', { user: 'U0CAROL' }));
      const resumed = await waitCall(h, t0, 'resume announcement', (c) => c.method === 'chat.postMessage' && c.body.channel === 'C0ANNOUNCE');
      expect(String(resumed.body.text)).toMatch(/Ferry is running again\*: <@U0CAROL> resumed at \d\d:\d\d UTC \(<@U0BOB> paused Ferry at \d\d:\d\d UTC\)\.$/);
      expect(await h.deps.queues.ops.isPaused()).toBe(false);
      // Both switches are in the audit trail.
      const raw = (await h.rt.redis.xrange(h.rt.key('audit'), '-', '+')) as [string, string[]][];
      const entries = raw.map(([, f]) => JSON.parse(f[f.indexOf('json') + 1]!) as { kind: string; action: string; actor: string; outcome: string });
      expect(entries.filter((e) => e.kind === 'workflow').map((e) => `${e.actor} ${e.action} ${e.outcome}`)).toEqual(['U0BOB pause all ok', 'U0CAROL resume all ok']);
    } finally {
      await close();
    }
  });
});
