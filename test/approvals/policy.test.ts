import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { membership } from '../../src/core/permissions.js';
import {
  APPROVAL_ACTIONS,
  canExecute,
  createRequest,
  decide,
  expire,
  markExecuted,
  resolvePolicy,
  statusLine,
  voidRequest,
  type ApprovalAction,
  type ApprovalRequest,
  type DecideResult,
} from '../../src/approvals/policy.js';
import { canonicalJson, planHash } from '../../src/approvals/plan-hash.js';
import { isRefusal } from '../../src/core/refusal.js';

// UALICE asks; UBOB and UCAROL approve through group:approvers; UDAVE through the Slack user
// group SAPPROVE; UEVE is nobody in particular; "frank" is a console identity.
const config = configSchema.parse({
  groups: {
    operators: ['UALICE', 'UBOB', 'UCAROL', 'UDAVE', 'UEVE'],
    approvers: ['UALICE', 'UBOB', 'UCAROL', 'SAPPROVE', 'frank'],
  },
  approvals: {
    'remove-ports': { approvals: 1, expiry: '30m' },
    'rolling-run': { approvals: 2, approvers: ['group:approvers'], expiry: '1h' },
  },
});
const groupMembers = { SAPPROVE: ['UDAVE'] };
const members = membership(config, groupMembers);

const T0 = Date.UTC(2025, 5, 3, 14, 2, 0); // 14:02 UTC; 30m expiry -> 14:32 UTC
const MIN = 60_000;
const PLAN = { host: 'hyp03', ports: [{ wwpn: 'C003FF0000FFFF00', fabric: 'A' }] };

function request(action: ApprovalAction = 'remove-ports', requester = 'UALICE'): ApprovalRequest<typeof PLAN> {
  return createRequest({ id: '12', action, requester, plan: PLAN, summary: 'remove 1 stale port on hyp03' }, resolvePolicy(config, action), T0);
}

interface Step {
  user: string;
  decision?: 'approve' | 'reject';
  reason?: string;
  /** Minutes after creation. */
  at?: number;
  /** Click on a card showing another plan. */
  staleCard?: boolean;
}

/** Feed the steps through decide(), persisting what the store would persist. */
function run(req: ApprovalRequest<typeof PLAN>, steps: Step[]): { req: ApprovalRequest<typeof PLAN>; results: DecideResult<typeof PLAN>[] } {
  const results: DecideResult<typeof PLAN>[] = [];
  for (const s of steps) {
    const r = decide(
      req,
      {
        user: s.user,
        decision: s.decision ?? 'approve',
        reason: s.reason,
        planHash: s.staleCard ? planHash({ ...PLAN, host: 'hyp04' }) : req.planHash,
        now: T0 + (s.at ?? 1) * MIN,
      },
      members,
    );
    results.push(r);
    if (!r.refused) req = r.request;
    else if (r.request) req = r.request;
  }
  return { req, results };
}

describe('resolvePolicy', () => {
  const bare = configSchema.parse({});
  it.each([
    ['remove-ports', 1, 30 * MIN],
    ['drain', 0, 30 * MIN],
    ['migrate', 0, 30 * MIN],
    ['rolling-run', 1, 30 * MIN],
    ['pause', 0, 30 * MIN],
    ['override', 1, 30 * MIN],
  ] as const)('default %s: %i approvals, 30m, group:approvers', (action, approvals, expiryMs) => {
    expect(resolvePolicy(bare, action)).toEqual({ action, approvals, approvers: ['group:approvers'], expiryMs, configured: false });
  });

  it('every action has a default', () => {
    for (const a of APPROVAL_ACTIONS) expect(resolvePolicy(bare, a).action).toBe(a);
  });

  it.each([
    [{ drain: { approvals: 2, approvers: ['UBOB', 'S0OPS'], expiry: '10m' } }, 'drain', 2, ['UBOB', 'S0OPS'], 10 * MIN],
    // A configured entry takes the schema's defaults for what it leaves out (1, group:approvers, 30m).
    [{ migrate: {} }, 'migrate', 1, ['group:approvers'], 30 * MIN],
    [{ 'remove-stale-ports': { approvals: 2 } }, 'remove-ports', 2, ['group:approvers'], 30 * MIN],
    [{ 'pause-all': { approvals: 0, approvers: ['UCAROL'] } }, 'pause', 0, ['UCAROL'], 30 * MIN],
    [{ override: { expiry: 900 } }, 'override', 1, ['group:approvers'], 15 * MIN],
  ] as const)('configured %j -> %s', (approvals, action, n, approvers, expiryMs) => {
    const p = resolvePolicy(configSchema.parse({ approvals }), action);
    expect(p).toEqual({ action, approvals: n, approvers, expiryMs, configured: true });
  });
});

describe('createRequest', () => {
  it('binds the request to the hash of its plan and the policy expiry', () => {
    const r = request();
    expect(r.planHash).toBe(planHash(PLAN));
    expect(r.expiresAt).toBe(T0 + 30 * MIN);
    expect(r).toMatchObject({ status: 'pending', required: 1, approvers: ['group:approvers'], decisions: [], version: 0 });
    expect(statusLine(r)).toBe('Needs 1 more approval from the approvers group · expires 14:32 UTC');
  });
});

describe('decide', () => {
  type Case = {
    name: string;
    action?: ApprovalAction;
    requester?: string;
    steps: Step[];
    /** Last step's outcome: an effect, or a refusal code. */
    last: string;
    sentence?: RegExp;
    status: ApprovalRequest['status'];
    approvedBy?: string[];
  };
  const cases: Case[] = [
    { name: 'one approver approves', steps: [{ user: 'UBOB' }], last: 'approved', sentence: /^Approved by <@UBOB>\.$/, status: 'approved' },
    {
      name: 'self-approval is refused even though the requester is listed',
      steps: [{ user: 'UALICE' }],
      last: 'self-approval',
      sentence: /^You asked for this; someone else has to approve it\.$/,
      status: 'pending',
    },
    {
      name: 'self-approval, then an approver',
      steps: [{ user: 'UALICE' }, { user: 'UCAROL' }],
      last: 'approved',
      status: 'approved',
      approvedBy: ['UCAROL'],
    },
    {
      name: 'a non-approver is refused, naming who may approve',
      steps: [{ user: 'UEVE' }],
      last: 'not-approver',
      sentence: /^Only the approvers group may approve or reject this request\.$/,
      status: 'pending',
    },
    {
      name: 'a non-approver cannot reject either',
      steps: [{ user: 'UEVE', decision: 'reject' }],
      last: 'not-approver',
      status: 'pending',
    },
    { name: 'member of a Slack user group inside the Ferry group', steps: [{ user: 'UDAVE' }], last: 'approved', status: 'approved' },
    { name: 'console identity in the Ferry group', steps: [{ user: 'frank' }], last: 'approved', status: 'approved' },
    { name: 'console identity matches case-insensitively', steps: [{ user: 'Frank' }], last: 'approved', status: 'approved' },
    {
      name: 'after expiry the click is refused and the request expires',
      steps: [{ user: 'UBOB', at: 30 }],
      last: 'expired',
      sentence: /^This request expired at 14:32 UTC; ask again\.$/,
      status: 'expired',
    },
    { name: 'one millisecond before expiry still counts', steps: [{ user: 'UBOB', at: 30 - 1 / MIN }], last: 'approved', status: 'approved' },
    {
      name: 'a non-approver after expiry is told it expired',
      steps: [{ user: 'UEVE', at: 45 }],
      last: 'expired',
      status: 'expired',
    },
    {
      name: 'a changed plan voids the request',
      steps: [{ user: 'UBOB', staleCard: true }],
      last: 'plan-changed',
      sentence: /^The plan changed since this card was shown; the approval is void\.$/,
      status: 'void',
    },
    {
      name: 'a non-approver with a stale card cannot void it',
      steps: [{ user: 'UEVE', staleCard: true }],
      last: 'not-approver',
      status: 'pending',
    },
    {
      name: 'after void, a good click is refused',
      steps: [{ user: 'UBOB', staleCard: true }, { user: 'UCAROL' }],
      last: 'finished',
      sentence: /^This request is void \(the plan changed after the card was shown\); ask again\.$/,
      status: 'void',
    },
    {
      name: 'a decision on an approved request is refused',
      steps: [{ user: 'UBOB' }, { user: 'UCAROL' }],
      last: 'finished',
      sentence: /^Already approved by <@UBOB>; nothing to do\.$/,
      status: 'approved',
      approvedBy: ['UBOB'],
    },
    {
      name: 'a reject after approval changes nothing',
      steps: [{ user: 'UBOB' }, { user: 'UCAROL', decision: 'reject' }],
      last: 'finished',
      status: 'approved',
    },
    {
      name: 'the same click delivered three times counts once',
      steps: [{ user: 'UBOB' }, { user: 'UBOB' }, { user: 'UBOB' }],
      last: 'finished',
      sentence: /^Already approved by <@UBOB>; nothing to do\.$/,
      status: 'approved',
      approvedBy: ['UBOB'],
    },
    {
      name: 'two approvers needed: the first is recorded',
      action: 'rolling-run',
      steps: [{ user: 'UBOB' }],
      last: 'recorded',
      sentence: /^Approval 1 of 2 recorded from <@UBOB>; one more is needed from the approvers group\.$/,
      status: 'pending',
    },
    {
      name: 'two approvers needed: a double approve does not count twice',
      action: 'rolling-run',
      steps: [{ user: 'UBOB' }, { user: 'UBOB' }],
      last: 'duplicate',
      sentence: /^Your approval is already recorded; one more is needed from the approvers group\.$/,
      status: 'pending',
      approvedBy: ['UBOB'],
    },
    {
      name: 'two approvers needed: two distinct approvers approve',
      action: 'rolling-run',
      steps: [{ user: 'UBOB' }, { user: 'UBOB' }, { user: 'UDAVE' }],
      last: 'approved',
      sentence: /^Approved by <@UBOB> and <@UDAVE>\.$/,
      status: 'approved',
      approvedBy: ['UBOB', 'UDAVE'],
    },
    {
      name: 'two approvers needed: the requester does not make up the second',
      action: 'rolling-run',
      steps: [{ user: 'UBOB' }, { user: 'UALICE' }],
      last: 'self-approval',
      status: 'pending',
    },
    {
      name: 'any reject rejects, with its reason',
      action: 'rolling-run',
      steps: [{ user: 'UBOB' }, { user: 'UCAROL', decision: 'reject', reason: 'hyp03 is in the freeze' }],
      last: 'rejected',
      sentence: /^Rejected by <@UCAROL>: hyp03 is in the freeze\.$/,
      status: 'rejected',
    },
    {
      name: 'after a reject, approvals are refused',
      steps: [{ user: 'UCAROL', decision: 'reject' }, { user: 'UBOB' }],
      last: 'finished',
      sentence: /^Already rejected by <@UCAROL>; nothing to do\.$/,
      status: 'rejected',
    },
    {
      name: 'the requester may withdraw',
      steps: [{ user: 'UALICE', decision: 'reject' }],
      last: 'rejected',
      sentence: /^Withdrawn by <@UALICE>\.$/,
      status: 'rejected',
    },
    {
      name: 'N=0: the requester’s own Start suffices',
      action: 'drain',
      steps: [{ user: 'UALICE' }],
      last: 'approved',
      sentence: /^Started by <@UALICE>\.$/,
      status: 'approved',
    },
    {
      name: 'N=0: a second Start is refused',
      action: 'drain',
      steps: [{ user: 'UALICE' }, { user: 'UALICE' }],
      last: 'finished',
      sentence: /^Already started by <@UALICE>; nothing to do\.$/,
      status: 'approved',
    },
    {
      name: 'N=0: the requester need not be an approver',
      action: 'drain',
      requester: 'UEVE',
      steps: [{ user: 'UEVE' }],
      last: 'approved',
      status: 'approved',
    },
    {
      name: 'N=0: an approver may start it for the requester',
      action: 'migrate',
      requester: 'UEVE',
      steps: [{ user: 'UBOB' }],
      last: 'approved',
      status: 'approved',
    },
    {
      name: 'N=0: anyone else is refused, naming requester and approvers',
      action: 'drain',
      requester: 'UBOB',
      steps: [{ user: 'UEVE' }],
      last: 'not-approver',
      sentence: /^Only <@UBOB> \(who asked\) or the approvers group may start or reject this request\.$/,
      status: 'pending',
    },
    {
      name: 'N=0: a stale Start card voids',
      action: 'drain',
      steps: [{ user: 'UALICE', staleCard: true }],
      last: 'plan-changed',
      status: 'void',
    },
  ];

  it.each(cases)('$name', (c) => {
    const { req, results } = run(request(c.action, c.requester), c.steps);
    const last = results[results.length - 1]!;
    expect(last.refused ? last.code : last.effect).toBe(c.last);
    // A refused decision is the one refusal shape (core/refusal.ts) every caller says as is.
    expect(isRefusal(last)).toBe(last.refused);
    if (c.sentence) expect(last.sentence).toMatch(c.sentence);
    expect(req.status).toBe(c.status);
    if (c.approvedBy) expect(req.decisions.filter((d) => d.decision === 'approve').map((d) => d.user)).toEqual(c.approvedBy);
    // Exactly-once: at most one result ever reports the move to approved.
    expect(results.filter((r) => !r.refused && r.effect === 'approved').length).toBeLessThanOrEqual(1);
  });

  it('a refusal without a request field changes nothing', () => {
    const req = request('rolling-run');
    const r1 = decide(req, { user: 'UBOB', decision: 'approve', planHash: req.planHash, now: T0 + MIN }, members);
    expect(r1.refused).toBe(false);
    const after = !r1.refused ? r1.request : req;
    for (const user of ['UALICE', 'UEVE', 'UBOB']) {
      const r = decide(after, { user, decision: 'approve', planHash: after.planHash, now: T0 + 2 * MIN }, members);
      expect(r.refused).toBe(true);
      expect(r.request).toBeUndefined();
    }
  });

  it('does not mutate its input and bumps version once per transition', () => {
    const req = request('rolling-run');
    const frozen = structuredClone(req);
    const r1 = decide(req, { user: 'UBOB', decision: 'approve', planHash: req.planHash, now: T0 + MIN }, members);
    expect(req).toEqual(frozen);
    if (r1.refused) throw new Error('expected ok');
    expect(r1.request.version).toBe(1);
    const r2 = decide(r1.request, { user: 'UCAROL', decision: 'approve', planHash: req.planHash, now: T0 + 2 * MIN }, members);
    if (r2.refused) throw new Error('expected ok');
    expect(r2.request).toMatchObject({ version: 2, status: 'approved', finishedAt: T0 + 2 * MIN });
  });

  it('a user group that was not resolved has no members (fail closed)', () => {
    const req = request();
    const r = decide(req, { user: 'UDAVE', decision: 'approve', planHash: req.planHash, now: T0 + MIN }, membership(config, {}));
    expect(!r.refused ? r.effect : r.code).toBe('not-approver');
  });
});

describe('racing approvers through a compare-and-set store', () => {
  // A model of the Redis store: a write succeeds only if the version it read is current;
  // the loser re-reads and decides again. Every interleaving of the clicks must approve
  // exactly once and never lose an approval.
  function race(clicks: string[], required: 'remove-ports' | 'rolling-run'): { approvedEffects: number; final: ApprovalRequest<typeof PLAN> } {
    let stored = request(required);
    const snapshots = clicks.map(() => stored); // everyone read the same initial state
    let approvedEffects = 0;
    clicks.forEach((user, i) => {
      let seen = snapshots[i]!;
      for (;;) {
        const r = decide(seen, { user, decision: 'approve', planHash: seen.planHash, now: T0 + MIN }, members);
        const next = r.request;
        if (!next) return; // refusal: nothing to write
        if (stored.version !== seen.version) {
          seen = stored; // CAS lost: re-read, decide again
          continue;
        }
        stored = next;
        if (!r.refused && r.effect === 'approved') approvedEffects++;
        return;
      }
    });
    return { approvedEffects, final: stored };
  }

  it.each([
    [['UBOB', 'UCAROL'], 'remove-ports', ['UBOB']],
    [['UBOB', 'UBOB', 'UBOB'], 'remove-ports', ['UBOB']],
    [['UBOB', 'UCAROL'], 'rolling-run', ['UBOB', 'UCAROL']],
    [['UBOB', 'UCAROL', 'UDAVE', 'UBOB'], 'rolling-run', ['UBOB', 'UCAROL']],
    [['UBOB', 'UBOB', 'UCAROL', 'UCAROL'], 'rolling-run', ['UBOB', 'UCAROL']],
  ] as const)('%j on %s approves once', (clicks, action, by) => {
    const { approvedEffects, final } = race([...clicks], action);
    expect(approvedEffects).toBe(1);
    expect(final.status).toBe('approved');
    expect(final.decisions.map((d) => d.user)).toEqual(by);
  });

  it('random decision sequences never approve twice and never leave a terminal state', () => {
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const users = ['UALICE', 'UBOB', 'UCAROL', 'UDAVE', 'UEVE'];
    for (let trial = 0; trial < 500; trial++) {
      let req = request(rand(2) ? 'rolling-run' : 'remove-ports');
      let approvals = 0;
      let terminal: string | undefined;
      for (let k = 0; k < 8; k++) {
        const r = decide(
          req,
          { user: users[rand(users.length)]!, decision: rand(6) === 0 ? 'reject' : 'approve', planHash: rand(20) === 0 ? 'x' : req.planHash, now: T0 + rand(35) * MIN },
          members,
        );
        if (!r.refused && r.effect === 'approved') approvals++;
        const next = !r.refused ? r.request : (r.request ?? req);
        if (terminal) expect(next.status).toBe(terminal);
        if (next.status !== 'pending') terminal = next.status;
        req = next;
      }
      expect(approvals).toBeLessThanOrEqual(1);
      if (req.status === 'approved') expect(new Set(req.decisions.map((d) => d.user)).size).toBeGreaterThanOrEqual(req.required);
      expect(req.decisions.some((d) => d.user === 'UALICE' && d.decision === 'approve')).toBe(false);
    }
  });
});

describe('expire', () => {
  it.each([
    ['pending, before expiry', 'pending', 29, false, 'pending'],
    ['pending, at expiry', 'pending', 30, true, 'expired'],
    ['approved, after expiry (an approval is final)', 'approved', 60, false, 'approved'],
    ['rejected, after expiry', 'rejected', 60, false, 'rejected'],
  ] as const)('%s', (_name, status, at, changed, after) => {
    const req = { ...request(), status };
    const r = expire(req, T0 + at * MIN);
    expect(r.changed).toBe(changed);
    expect(r.request.status).toBe(after);
    if (changed) {
      expect(r.request.version).toBe(req.version + 1);
      expect(statusLine(r.request)).toBe('Expired at 14:32 UTC without enough approvals');
    } else expect(r.request).toBe(req);
  });
});

describe('execution', () => {
  function approved(): ApprovalRequest<typeof PLAN> {
    const r = run(request(), [{ user: 'UBOB' }]);
    return r.req;
  }

  it('only an approved request with its approved plan can execute, once', () => {
    const req = approved();
    expect(canExecute(req)).toBe(true);
    expect(canExecute(req, planHash(PLAN))).toBe(true);
    expect(canExecute(req, planHash({ ...PLAN, host: 'hyp04' }))).toBe(false);
    expect(canExecute(request())).toBe(false);
    const done = markExecuted(req, T0 + 2 * MIN);
    expect(done).toMatchObject({ status: 'executed', executedAt: T0 + 2 * MIN, version: req.version + 1 });
    expect(markExecuted(done!, T0 + 3 * MIN)).toBeNull();
    expect(canExecute(done!)).toBe(false);
    expect(statusLine(done!)).toBe('Approved by <@UBOB> · carried out');
  });

  it('a stored plan that no longer matches its hash cannot execute', () => {
    const req = approved();
    const tampered = { ...req, plan: { ...PLAN, ports: [...PLAN.ports, { wwpn: 'C003FF0000FFFF01', fabric: 'B' }] } };
    expect(canExecute(tampered)).toBe(false);
    expect(markExecuted(tampered, T0)).toBeNull();
  });

  it('voidRequest voids pending or approved requests, not executed ones', () => {
    const v = voidRequest(approved(), 'a VM now uses C003FF0000FFFF00', T0 + 5 * MIN);
    expect(v).toMatchObject({ changed: true, request: { status: 'void', voidReason: 'a VM now uses C003FF0000FFFF00' } });
    expect(canExecute(v.request)).toBe(false);
    expect(voidRequest(markExecuted(approved(), T0)!, 'late', T0).changed).toBe(false);
  });
});

describe('statusLine', () => {
  it.each<[string, Step[], ApprovalAction, string]>([
    ['two needed, one given', [{ user: 'UBOB' }], 'rolling-run', 'Needs 1 more approval from the approvers group (approved so far by <@UBOB>) · expires 15:02 UTC'],
    ['N=0 waiting', [], 'drain', 'Waiting for <@UALICE> (who asked) or the approvers group to start it · expires 14:32 UTC'],
    ['started', [{ user: 'UALICE' }], 'drain', 'Started by <@UALICE>'],
    ['rejected', [{ user: 'UCAROL', decision: 'reject', reason: 'not today.' }], 'remove-ports', 'Rejected by <@UCAROL>: not today.'],
    ['withdrawn', [{ user: 'UALICE', decision: 'reject' }], 'remove-ports', 'Withdrawn by <@UALICE>'],
    ['void', [{ user: 'UBOB', staleCard: true }], 'remove-ports', 'Void: the plan changed after the card was shown'],
  ])('%s', (_name, steps, action, line) => {
    expect(statusLine(run(request(action), steps).req)).toBe(line);
  });
});

describe('plan hash', () => {
  it.each([
    ['key order does not matter', { a: 1, b: [1, 2] }, { b: [1, 2], a: 1 }, true],
    ['nested key order does not matter', { p: [{ x: 1, y: 2 }] }, { p: [{ y: 2, x: 1 }] }, true],
    ['undefined keys are left out', { a: 1, b: undefined }, { a: 1 }, true],
    ['array order matters', { p: [1, 2] }, { p: [2, 1] }, false],
    ['types matter', { a: 1 }, { a: '1' }, false],
    ['one changed WWPN matters', PLAN, { ...PLAN, ports: [{ wwpn: 'C003FF0000FFFF01', fabric: 'A' }] }, false],
  ])('%s', (_name, a, b, same) => {
    expect(planHash(a) === planHash(b)).toBe(same);
  });

  it('is sha256 hex of the canonical JSON', () => {
    expect(canonicalJson({ b: [3, { d: null, c: 'x' }], a: true })).toBe('{"a":true,"b":[3,{"c":"x","d":null}]}');
    expect(planHash({})).toBe('44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
    expect(planHash(PLAN)).toMatch(/^[0-9a-f]{64}$/);
    expect(canonicalJson({ at: new Date(T0) })).toBe('{"at":"2025-06-03T14:02:00.000Z"}');
  });

  it.each([
    ['NaN', { n: NaN }],
    ['Infinity', { n: Infinity }],
    ['bigint', { n: 1n }],
    ['a function', { f: () => 1 }],
  ])('refuses %s', (_name, v) => {
    expect(() => planHash(v)).toThrow(/plan hash: \$\.\w/);
  });

  it('refuses cycles but accepts shared sub-objects', () => {
    const shared = { wwpn: 'C003FF0000FFFF00' };
    expect(() => planHash({ a: shared, b: shared })).not.toThrow();
    const cyc: Record<string, unknown> = {};
    cyc.self = cyc;
    expect(() => planHash(cyc)).toThrow(/refers back to itself/);
  });
});
