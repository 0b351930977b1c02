/**
 * Operations: what a user asked for, as Ferry remembers it. One record per command that does
 * work (short numeric id, "job 41"), with its conversation, status card and counters. Lives in
 * Redis so web and worker processes share it and it survives restarts.
 */
import type { Runtime } from '../runtime.js';
import { randomUUID } from 'node:crypto';
import { OptimisticTx } from '../redis-tx.js';
import { runScript } from '../redis-scripts.js';
import { confirmed, confirmedWrite, untilConfirmed } from '../redis-confirm.js';
import { currentFence, FencedOut } from './fence.js';
import { checkEpoch, noteOpId } from './epoch.js';
import type { Conversation, MessageRef } from '../chat/conversation.js';

export type OpStatus = 'queued' | 'running' | 'waiting' | 'succeeded' | 'partial' | 'failed' | 'cancelled';
export const FINISHED: OpStatus[] = ['succeeded', 'partial', 'failed', 'cancelled'];

export interface Operation {
  id: number;
  kind: string;
  /** The command as the user typed it (normalised). */
  title: string;
  requester: string;
  conv: Conversation;
  hosts: string[];
  status: OpStatus;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  cardRef?: MessageRef;
  /** The command's own answer in the channel ("drain hyp03: checking…"), updated when the operation ends. */
  echoRef?: MessageRef;
  /** One line for `jobs` and the App Home. */
  summary?: string;
  /** Workflow-specific parameters. */
  params: Record<string, unknown>;
}

/**
 * Every Redis key an operation owns besides its record, and what it holds. Workflows ask the
 * store for them (Operations.keyOf), so one list says what a job leaves in Redis.
 */
export const OP_KEY_PARTS = [
  /** Who asked it to stop (requestCancel). */
  'cancel',
  /** Per-host or per-item results (sweeps, removals). */
  'results',
  /** The frozen plan a drain's Start and approval bind to. */
  'plan',
  /** Per-VM state of a drain/restore/migrate (what a resumed job reads first). */
  'vms',
  /** Migration percent per VM, for the card. */
  'pct',
  /** VMs saved in place (save-non-ha). */
  'saved',
  /** Runs of a step (a second run is a resume), per round for a drain. */
  'runs',
  /** Start recorded once (drain/migrate), or a sweep's start marker. */
  'started',
  /** The claim of the one path that ends a wait (drain/control.ts endWait). */
  'wait-ended',
  /** The one decision per hold round (rollback / retry / skip). */
  'decision',
  /** VMs with a migration in flight, by run token (drain/steps.ts inFlight). */
  'inflight',
  /** Ports a removal has tried (a re-run does not try them twice). */
  'attempted',
  /** The approval request a sweep's Remove button asked for, once. */
  'removal-request',
  /** A sweep's streamed CSV reports. */
  'csv',
] as const;

export type OpKeyPart = (typeof OP_KEY_PARTS)[number];

/**
 * An operation's params as the workflow of its kind wrote them (each workflow owns one shape);
 * an operation of another kind is refused rather than read as the wrong shape.
 */
export function paramsOf<P extends object>(op: Pick<Operation, 'id' | 'kind' | 'params'>, kinds: readonly string[]): P {
  if (!kinds.includes(op.kind)) throw new Error(`job ${op.id} is a ${op.kind}, not a ${kinds.join(' or ')}; its parameters have another shape`);
  return op.params as P;
}

/**
 * What an operation of any kind may keep in its params and code that does not know its kind
 * reads (give-up, finishOp): checked field by field, so another kind's shape reads as absent.
 */
export interface CommonParams {
  /** The cluster whose memory its plan reserved (drain/reserve.ts). */
  cluster?: string;
  /** Staged kinds (drain, restore, migrate) end at stage 'done'. */
  stage?: string;
  durationMs?: number;
}

export function commonParams(op: Pick<Operation, 'params'>): CommonParams {
  const p = op.params;
  return {
    ...(typeof p.cluster === 'string' ? { cluster: p.cluster } : {}),
    ...(typeof p.stage === 'string' ? { stage: p.stage } : {}),
    ...(typeof p.durationMs === 'number' ? { durationMs: p.durationMs } : {}),
  };
}

export class Operations {
  /** rt.newConnection(): closed with the runtime. */
  private readonly tx: OptimisticTx;

  constructor(private readonly rt: Runtime) {
    this.tx = new OptimisticTx(() => rt.newConnection());
  }

  private key(id: number): string {
    return this.rt.key('op', id);
  }

  /** The key of one of the operation's parts (OpKeyPart says what each holds). */
  keyOf(id: number | string, part: OpKeyPart, ...rest: (string | number)[]): string {
    return this.rt.key('op', id, part, ...rest);
  }

  async create(op: Omit<Operation, 'id' | 'status' | 'createdAt'>): Promise<Operation> {
    // A Redis that came back empty must not hand out ids old buttons still carry (epoch.ts).
    await checkEpoch(this.rt);
    // Confirmed on the replica (redis-confirm.ts): a record a failover lost would leave its job
    // without an operation. A replayed create whose id the new primary gave out again takes a new id.
    for (;;) {
      const id = await this.rt.redis.incr(this.rt.key('op', 'seq'));
      noteOpId(this.rt, id);
      const full: Operation = { ...op, id, status: 'queued', createdAt: this.rt.clock.now() };
      const keys = [this.key(id), this.rt.key('ops'), this.rt.key('ops', 'active'), this.rt.key('op', 'seq')];
      const args = [String(id), JSON.stringify(full), String(full.createdAt), randomUUID()];
      if (Number(await confirmedWrite(this.rt.redis, `operation ${id}`, () => runScript(this.rt.redis, 'op-create', keys, args))) === 1) return full;
    }
  }

  async get(id: number | string): Promise<Operation | null> {
    const raw = await this.rt.redis.hget(this.key(Number(id)), 'json');
    if (!raw) return null;
    const op = JSON.parse(raw) as Operation;
    noteOpId(this.rt, op.id);
    return op;
  }

  /** Read-modify-write of the JSON part; counters use incr() instead. */
  async patch(id: number, change: Partial<Operation>): Promise<Operation> {
    const key = this.key(id);
    const fence = currentFence();
    // Confirmed like the ledger (a status a failover lost would show a finished operation running);
    // made again on the new primary when not: the merge of `change` is idempotent.
    const next = await untilConfirmed(`operation ${id}`, () => this.tx.run(async (conn) => {
      // A run that lost its job (fence.ts) must not write its state over the run that has it.
      if (fence) {
        await conn.watch(key, fence.lockKey);
        if ((await conn.get(fence.lockKey)) !== fence.token) throw new FencedOut(fence);
      } else await conn.watch(key);
      const raw = await conn.hget(key, 'json');
      if (!raw) throw new Error(`operation ${id} does not exist`);
      const merged = { ...(JSON.parse(raw) as Operation), ...change };
      const multi = conn.multi().hset(key, 'json', JSON.stringify(merged));
      if (change.status && FINISHED.includes(change.status)) multi.srem(this.rt.key('ops', 'active'), String(id));
      return { multi, result: merged };
    }, 50, (conn) => confirmed(conn)));
    if (change.status && FINISHED.includes(change.status)) this.rt.metrics.operationsFinished.labels(next.kind, change.status).inc();
    if (change.status) await this.rt.redis.publish(this.rt.key('op-events'), JSON.stringify({ id, status: next.status }));
    return next;
  }

  /** Ask an operation to stop: workflows check the flag between steps (cancelRequested). */
  async requestCancel(id: number | string, user: string): Promise<void> {
    // Confirmed (redis-confirm.ts): a flag a failover lost would let a drain go on moving VMs
    // after the user was told it is being cancelled. Setting it again is harmless.
    await confirmedWrite(this.rt.redis, `job ${id}'s cancel`, () => this.rt.redis.set(this.cancelKey(id), user, 'EX', 86_400));
  }

  /** Who asked the operation to stop (requestCancel), or null. */
  async cancelRequested(id: number | string): Promise<string | null> {
    return this.rt.redis.get(this.cancelKey(id));
  }

  private cancelKey(id: number | string): string {
    return this.keyOf(id, 'cancel');
  }

  async incr(id: number, field: string, by = 1): Promise<number> {
    return this.rt.redis.hincrby(this.key(id), `n:${field}`, by);
  }

  /** Several counters at once, so a card never shows one without the other; returns their new values. */
  async incrMany(id: number, by: Record<string, number>): Promise<Record<string, number>> {
    const multi = this.rt.redis.multi();
    const fields = Object.entries(by);
    for (const [field, n] of fields) multi.hincrby(this.key(id), `n:${field}`, n);
    const res = (await multi.exec()) ?? [];
    return Object.fromEntries(fields.map(([field], i) => [field, Number(res[i]?.[1] ?? 0)]));
  }

  /**
   * Counters set to what the results hold, before a summary: a count that a Sentinel failover
   * lost after its result was kept stays short otherwise (the retried step skips an item whose
   * result is there). Confirmed like the record (redis-confirm.ts); setting them again is harmless.
   */
  async setCounters(id: number, values: Record<string, number>): Promise<void> {
    const flat = Object.entries(values).flatMap(([field, n]) => [`n:${field}`, String(n)]);
    if (flat.length) await confirmedWrite(this.rt.redis, `operation ${id}'s counts`, () => this.rt.redis.hset(this.key(id), ...flat));
  }

  /** Counters only: the record's JSON (every host name of a large sweep) is not read. */
  async counters(id: number): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    let cursor = '0';
    do {
      const [next, kv] = await this.rt.redis.hscan(this.key(id), cursor, 'MATCH', 'n:*', 'COUNT', 100);
      for (let i = 0; i < kv.length; i += 2) out[kv[i]!.slice(2)] = Number(kv[i + 1]);
      cursor = next;
    } while (cursor !== '0');
    return out;
  }

  /** Per-item results (host or VM -> JSON). */
  async setResult(id: number, item: string, value: unknown): Promise<void> {
    await this.rt.redis.hset(this.keyOf(id, 'results'), item, JSON.stringify(value));
  }

  async results<T>(id: number): Promise<Record<string, T>> {
    const all = await this.rt.redis.hgetall(this.keyOf(id, 'results'));
    return Object.fromEntries(Object.entries(all).map(([k, v]) => [k, JSON.parse(v) as T]));
  }

  async recent(limit = 20): Promise<Operation[]> {
    const ids = await this.rt.redis.zrevrange(this.rt.key('ops'), 0, limit - 1);
    const ops = await Promise.all(ids.map((id) => this.get(id)));
    return ops.filter((o): o is Operation => o !== null);
  }

  async active(): Promise<Operation[]> {
    const ids = await this.rt.redis.smembers(this.rt.key('ops', 'active'));
    const ops = await Promise.all(ids.map((id) => this.get(id)));
    return ops.filter((o): o is Operation => o !== null).sort((a, b) => a.id - b.id);
  }
}

/** Kinds whose running migrations a cancel aborts at once (the platform job is stopped). */
const MIGRATING_KINDS = new Set(['migrate', 'drain', 'restore']);

/** What the thread is told when someone asks to cancel a running operation. */
export function cancelAskedSentence(op: Pick<Operation, 'id' | 'kind' | 'status'>, who: string): string {
  if (op.status === 'running' && MIGRATING_KINDS.has(op.kind)) {
    return `${who} asked to cancel job ${op.id}; a migration in progress is stopped now (its VM stays where it was) and nothing new starts.`;
  }
  return `${who} asked to cancel job ${op.id}; it stops after the step in progress.`;
}
