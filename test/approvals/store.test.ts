/** The approval store over real Redis: compare-and-set, re-decide on a lost race, the pending index. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { LAB_DEFAULT_YAML } from '../../src/config/lab-default.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { silentLogger } from '../../src/log.js';
import { ApprovalStore } from '../../src/approvals/store.js';
import { approvedBy, decide, markExecuted, resolvePolicy, type DecideResult } from '../../src/approvals/policy.js';
import { membership } from '../../src/core/permissions.js';
import { buttonValue, parseButtonValue, renderApprovalCard, type PlannedPort } from '../../src/approvals/cards.js';
import { renderText } from '../../src/bot/render/text.js';

const now = Date.UTC(2026, 10, 22, 14, 0);
let rt: Runtime;
const plan: PlannedPort[] = [
  { host: 'hyp03', wwpn: 'C003FF6EDB4A0004', fabric: '100000C0DD00A0A0', hba: '5001438020035B00' },
  { host: 'hyp03', wwpn: 'C003FF6EDB4A0006', fabric: '100000C0DD00B0B0', hba: '5001438020035B02' },
];
const conv = { surface: 'console' as const, session: 's', user: 'alice' };

beforeAll(() => {
  const yaml = `${LAB_DEFAULT_YAML}approvals:\n  remove-ports:\n    approvals: 3\n    approvers: [group:approvers, dave, erin]\n    expiry: 30m\n`;
  rt = createRuntime({ loaded: parseConfig(yaml, 'test'), redisUrl: inject('redisUrl'), log: silentLogger(), prefix: `test-approval-store-${process.pid}-${Date.now()}`, clock: { now: () => now } });
});
afterAll(async () => rt.close());

const members = () => membership(rt.config);

async function newRequest(store: ApprovalStore) {
  return store.create({ action: 'remove-ports', requester: 'alice', plan, summary: 'remove 2 stale ports on hyp03' }, resolvePolicy(rt.config, 'remove-ports'), { conv });
}

describe('ApprovalStore', () => {
  it('allocates short ids and keeps the request, its meta and the pending index', async () => {
    const store = new ApprovalStore(rt);
    const a = await newRequest(store);
    const b = await newRequest(store);
    expect(Number(b.request.id)).toBe(Number(a.request.id) + 1);
    const got = await store.get<PlannedPort[]>(a.request.id);
    expect(got?.request).toEqual(a.request);
    expect(got?.meta.conv).toEqual(conv);
    expect(await store.get('nope')).toBeNull();
    expect(await store.due(now)).toEqual([]);
    expect(await store.due(now + 31 * 60_000)).toEqual(expect.arrayContaining([a.request.id, b.request.id]));
  });

  it('compare-and-set refuses a stale version and leaves the stored request alone', async () => {
    const store = new ApprovalStore(rt);
    const { request } = await newRequest(store);
    const first = decide(request, { user: 'bob', decision: 'approve', planHash: request.planHash, now }, members());
    const second = decide(request, { user: 'carol', decision: 'approve', planHash: request.planHash, now }, members());
    if (first.refused || second.refused) throw new Error('both decisions should be accepted on their own');
    expect(await store.compareAndSet(request.version, first.request)).toBe('ok');
    expect(await store.compareAndSet(request.version, second.request)).toBe('conflict');
    expect(approvedBy((await store.get(request.id))!.request)).toEqual(['bob']);
    expect(await store.compareAndSet(0, { ...first.request, id: '999999' })).toBe('missing');
  });

  it('transition re-reads and re-decides on a lost race: 3 approvers at once, N=3, approved exactly once', async () => {
    const store = new ApprovalStore(rt);
    const { request } = await newRequest(store);
    const outs = await Promise.all(
      ['bob', 'dave', 'erin', 'bob', 'carol'].map((user) =>
        store.transition<PlannedPort[], DecideResult<PlannedPort[]>>(request.id, (r) => {
          const d = decide(r, { user, decision: 'approve', planHash: r.planHash, now }, members());
          return { next: !d.refused ? d.request : null, result: d };
        }),
      ),
    );
    const effects = outs.map((o) => (!o!.result.refused ? o!.result.effect : o!.result.code));
    expect(effects.filter((e) => e === 'approved')).toHaveLength(1);
    const stored = (await store.get(request.id))!.request;
    expect(stored.status).toBe('approved');
    expect(approvedBy(stored)).toHaveLength(3);
    // Leaving pending takes it out of the expiry index.
    expect(await store.due(now + 31 * 60_000)).not.toContain(request.id);
    // The execution claim is also a CAS: two claims, one winner.
    const claims = await Promise.all(
      [1, 2].map(() =>
        store.transition<PlannedPort[], boolean>(request.id, (r) => {
          const m = markExecuted(r, now);
          return { next: m, result: m !== null };
        }),
      ),
    );
    expect(claims.map((c) => c!.result).sort()).toEqual([false, true]);
  });
});

describe('approval card', () => {
  it('pending: who asked, the exact plan, approvals, who may approve, expiry, the no-undo warning, buttons bound to the plan hash', async () => {
    const store = new ApprovalStore(rt);
    const { request } = await newRequest(store);
    const msg = renderApprovalCard(request);
    const text = renderText(msg);
    expect(text).toContain(`Remove 2 stale ports · request ${request.id}`);
    expect(text).toContain('Asked by @alice at 14:00 UTC: remove 2 stale ports on hyp03');
    expect(text).toMatch(/1\s+hyp03\s+C003FF6EDB4A0004\s+100000C0DD00A0A0\s+5001438020035B00/);
    expect(text).toMatch(/2\s+hyp03\s+C003FF6EDB4A0006\s+100000C0DD00B0B0\s+5001438020035B02/);
    expect(text).toContain('Approvals needed: 3');
    expect(text).toContain('Who may approve: the approvers group, @dave or @erin');
    expect(text).toContain('Expires: 14:30 UTC');
    expect(text).toContain('A removed port cannot be restored: there is no rollback.');
    const actions = msg.blocks.find((b) => b.type === 'actions');
    expect(actions?.type === 'actions' && actions.buttons.map((b) => [b.action, b.value, b.command])).toEqual([
      ['ferry:approve', `${request.id}:${request.planHash}`, `approve ${request.id}`],
      ['ferry:reject', `${request.id}:${request.planHash}`, `reject ${request.id} [reason]`],
    ]);
    expect(actions?.type === 'actions' && actions.buttons[0]!.confirm?.text).toContain('A removed port cannot be restored');
    expect(parseButtonValue(buttonValue(request))).toEqual({ id: request.id, planHash: request.planHash });
    expect(parseButtonValue('12')).toEqual({ id: '12', planHash: undefined });
  });

  it('finished states have no buttons; execution shows per-port results and the summary', async () => {
    const store = new ApprovalStore(rt);
    const { request } = await newRequest(store);
    for (const status of ['expired', 'rejected', 'void', 'approved'] as const) {
      expect(renderApprovalCard({ ...request, status }).blocks.some((b) => b.type === 'actions')).toBe(false);
    }
    const executed = { ...request, status: 'executed' as const, decisions: [{ user: 'bob', decision: 'approve' as const, at: now }] };
    const text = renderText(
      renderApprovalCard(executed, {
        status: 'done',
        results: [
          { n: 1, host: 'hyp03', wwpn: plan[0]!.wwpn, outcome: 'removed' },
          { n: 2, host: 'hyp03', wwpn: plan[1]!.wwpn, outcome: 'skipped', reason: 'now in use by VM web07' },
        ],
      }),
    );
    expect(text).toMatch(/1\s+hyp03\s+C003FF6EDB4A0004\s+\S+\s+\S+\s+removed/);
    expect(text).toContain('skipped: now in use by VM web07');
    expect(text).toContain('Done: 1 of 2 removed, 1 skipped.');
  });
});
