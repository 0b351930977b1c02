/**
 * Approval requests in Redis. The pure state machine (policy.ts) decides; this module persists
 * each transition with a compare-and-set on the request's `version` (a Lua script, so the
 * check and the write are one step for every Ferry process) and, when it loses a race,
 * re-reads and lets the caller decide again. That is what makes two approvers clicking at
 * once, a double click or a retried delivery approve (and run) at most once.
 *
 * Keys (under the runtime prefix):
 *   approval:seq        INCR for short ids ("approve 12")
 *   approval:<id>       hash: json (ApprovalRequest), v (its version), meta (conversation,
 *                       card, operation), w (the last write's id, so a replayed write knows its own)
 *   approvals:pending   zset id -> expiresAt, read by the expiry sweep
 *
 * Every write is confirmed on the replica (redis-confirm.ts) before the caller goes on: a
 * decision a failover lost would otherwise be said in the thread and then forgotten (the
 * request back to pending), or leave a removal running whose approval Redis no longer has.
 * Unconfirmed, the write is made again on the new primary; each one is idempotent for that.
 */
import { randomUUID } from 'node:crypto';
import type { Runtime } from '../runtime.js';
import { runScript } from '../redis-scripts.js';
import { confirmedWrite } from '../redis-confirm.js';
import { checkEpoch, noteApprovalId } from '../jobs/epoch.js';
import type { Conversation, MessageRef } from '../chat/conversation.js';
import { createRequest, type ApprovalRequest, type NewRequest, type ResolvedPolicy } from './policy.js';

/** Where the request lives in chat and which operation carries it out. */
export interface ApprovalMeta {
  /** The thread the card is in; decisions and per-port reports go here. */
  conv: Conversation;
  cardRef?: MessageRef;
  /** The command as typed, for the operation's title. */
  title?: string;
  /** The removal's operation, created when the request is approved. */
  opId?: number;
}

export interface ApprovalRecord<P = unknown> {
  request: ApprovalRequest<P>;
  meta: ApprovalMeta;
}

export type Transition<P, R> = (request: ApprovalRequest<P>) => { next: ApprovalRequest<P> | null; result: R };

export class ApprovalStore {
  constructor(private readonly rt: Runtime) {}

  private key(id: string): string {
    return this.rt.key('approval', id);
  }

  private pendingKey(): string {
    return this.rt.key('approvals', 'pending');
  }

  async create<P>(input: Omit<NewRequest<P>, 'id'>, policy: ResolvedPolicy, meta: ApprovalMeta): Promise<ApprovalRecord<P>> {
    // A failover can lose the INCR too: the new primary may hand the same id out again, so a
    // replayed create that finds its id taken by another request takes a new id.
    // A Redis that came back empty must not hand out request ids old cards still carry (jobs/epoch.ts).
    await checkEpoch(this.rt);
    for (;;) {
      const id = String(await this.rt.redis.incr(this.rt.key('approval', 'seq')));
      const request = createRequest({ ...input, id }, policy, this.rt.clock.now());
      const keys = [this.key(id), this.pendingKey(), this.rt.key('approval', 'seq')];
      const args = [id, JSON.stringify(request), String(request.version), JSON.stringify(meta), String(request.expiresAt), randomUUID()];
      const stored = await confirmedWrite(this.rt.redis, `approval request ${id}`, async () => Number(await runScript(this.rt.redis, 'approval-create', keys, args)));
      if (stored === 1) {
        noteApprovalId(this.rt, Number(id));
        return { request, meta };
      }
    }
  }

  async get<P = unknown>(id: string): Promise<ApprovalRecord<P> | null> {
    if (!/^\d{1,12}$/.test(id)) return null;
    const [json, meta] = await this.rt.redis.hmget(this.key(id), 'json', 'meta');
    if (!json || !meta) return null;
    noteApprovalId(this.rt, Number(id));
    return { request: JSON.parse(json) as ApprovalRequest<P>, meta: JSON.parse(meta) as ApprovalMeta };
  }

  async patchMeta(id: string, change: Partial<ApprovalMeta>): Promise<ApprovalMeta | null> {
    // meta is written by one process at a time (creation, then the card post); no CAS needed.
    const raw = await this.rt.redis.hget(this.key(id), 'meta');
    if (!raw) return null;
    const next = { ...(JSON.parse(raw) as ApprovalMeta), ...change };
    await confirmedWrite(this.rt.redis, `approval ${id}'s card and operation`, () => this.rt.redis.hset(this.key(id), 'meta', JSON.stringify(next)));
    return next;
  }

  /** Write `next` only if the stored version is still `expected`. */
  async compareAndSet<P>(expected: number, next: ApprovalRequest<P>): Promise<'ok' | 'conflict' | 'missing'> {
    const score = next.status === 'pending' ? String(next.expiresAt) : '';
    const writeId = randomUUID();
    const r = await confirmedWrite(this.rt.redis, `approval ${next.id} (${next.status})`, async () =>
      Number(await runScript(this.rt.redis, 'approval-cas', [this.key(next.id), this.pendingKey()], [String(expected), JSON.stringify(next), String(next.version), next.id, score, writeId])),
    );
    return r === 1 ? 'ok' : r === 0 ? 'conflict' : 'missing';
  }

  /**
   * Read, decide, compare-and-set; on a lost race read again and decide again. `fn` returns
   * the next state (null: nothing to write) and what to tell the caller.
   */
  async transition<P, R>(id: string, fn: Transition<P, R>): Promise<{ result: R; record: ApprovalRecord<P>; written: boolean } | null> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const record = await this.get<P>(id);
      if (!record) return null;
      const { next, result } = fn(record.request);
      if (!next) return { result, record, written: false };
      const cas = await this.compareAndSet(record.request.version, next);
      if (cas === 'ok') return { result, record: { ...record, request: next }, written: true };
      if (cas === 'missing') return null;
    }
    throw new Error(`approval ${id} kept changing under us; gave up after 100 attempts`);
  }

  /** Pending requests whose expiry has passed (the sweep expires them). */
  async due(now: number, limit = 200): Promise<string[]> {
    return this.rt.redis.zrangebyscore(this.pendingKey(), '-inf', String(now), 'LIMIT', 0, limit);
  }
}
