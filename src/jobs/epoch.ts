/**
 * Redis that lost its data. An epoch key is written at first start; a process that saw one (or
 * saw operations) and then finds none is talking to a Redis that came back empty (AOF off, a
 * failover to an empty replica, FLUSHALL). It says so, writes a new epoch, and moves the
 * operation sequence past every id it knows of, so a new operation never takes the id an old
 * card's buttons still carry.
 */
import { randomUUID } from 'node:crypto';
import type { Runtime } from '../runtime.js';
import { runScript } from '../redis-scripts.js';

interface EpochState {
  /** The epoch this process saw last. */
  known?: string;
  /** Highest operation id this process created or read. */
  maxOp: number;
  /** When this process last found the data gone. */
  lostAt?: number;
}

const states = new WeakMap<Runtime, EpochState>();

function state(rt: Runtime): EpochState {
  let s = states.get(rt);
  if (!s) states.set(rt, (s = { maxOp: 0 }));
  return s;
}

/** Room above the highest id one process saw, for ids other processes issued just before the loss. */
const ID_MARGIN = 1000;

export function noteOpId(rt: Runtime, id: number): void {
  const s = state(rt);
  if (id > s.maxOp) s.maxOp = id;
}

export interface EpochCheck {
  /** This call found the data gone (a Redis that came back empty), or another process just did. */
  lost: boolean;
  epoch: string;
}

/** Check (and write, the first time) the epoch; on a loss, write a new one and raise the id sequence. */
export async function checkEpoch(rt: Runtime): Promise<EpochCheck> {
  const s = state(rt);
  const key = rt.key('epoch');
  const cur = await rt.redis.get(key);
  if (cur && (!s.known || cur === s.known)) {
    s.known = cur;
    return { lost: false, epoch: cur };
  }
  // Missing, or replaced by another process that found the loss first.
  const lost = Boolean(s.known) || s.maxOp > 0;
  if (lost) {
    s.lostAt = Date.now();
    await runScript(rt.redis, 'raise-seq', [rt.key('op', 'seq')], [String(s.maxOp + ID_MARGIN)]);
    rt.log.error({ knownEpoch: s.known ?? null, highestOpSeen: s.maxOp }, "Ferry's Redis lost its data (its epoch key is gone): operations, ledgers and approvals before it are unknown now");
  }
  if (!cur) await rt.redis.set(key, JSON.stringify({ id: randomUUID(), at: Date.now(), ...(lost ? { afterLoss: true } : {}) }), 'NX');
  s.known = (await rt.redis.get(key)) ?? undefined;
  return { lost, epoch: s.known ?? '' };
}

/** The sentence for a thread whose operation vanished with the data. */
export function lostSentence(opId: number, title: string, hosts: string[]): string {
  const where = hosts.length ? ` Check ${hosts.join(', ')} by hand before anything else.` : '';
  return `Ferry's Redis lost its data: job ${opId} (${title}) can no longer be followed, and its record, plan, ledger and approvals are gone. Whatever it had already done stays done; nothing more is done by it.${where}`;
}

/**
 * For an answer that found no drain ledger: when this Redis came back empty at some point (its
 * epoch says so), the ledger may be one of the things it lost, and the user must hear that
 * rather than only "no drain ledger". '' when no loss is recorded.
 */
export async function dataLossNote(rt: Runtime, host: string): Promise<string> {
  const raw = await rt.redis.get(rt.key('epoch'));
  if (!raw) return '';
  let epoch: { at?: number; afterLoss?: boolean };
  try {
    epoch = JSON.parse(raw) as typeof epoch;
  } catch {
    return '';
  }
  if (!epoch.afterLoss) return '';
  const when = epoch.at ? new Date(epoch.at).toISOString().slice(0, 16).replace('T', ' ') + ' UTC' : 'an earlier time';
  return ` Ferry's Redis lost its data (found at ${when}); a drain of ${host} from before then is no longer known: check where its VMs are (status ${host}) and bring them home with migrate.`;
}
