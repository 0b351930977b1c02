/**
 * The audit trail: append-only, in a Redis stream. One entry per command, approval decision
 * and mutating adapter call: who, what, where, approved by whom, outcome, job id. Retention is
 * configuration (audit.retentionDays), enforced by trimming on append (XADD MINID).
 */
import { randomUUID } from 'node:crypto';
import type { Runtime } from '../runtime.js';
import { confirmedWrite } from '../redis-confirm.js';

export interface AuditEntry {
  /** Slack user id or console name; "ferry" for Ferry's own scheduled actions. */
  actor: string;
  /** command | decision | adapter | workflow */
  kind: 'command' | 'decision' | 'adapter' | 'workflow';
  /** What happened: "drain hyp03", "approve request 12", "removeVirtualPort". */
  action: string;
  /** Hosts and VMs concerned (for `audit <host|vm>`). */
  targets: string[];
  opId?: number;
  approvedBy?: string[];
  outcome: 'ok' | 'refused' | 'failed' | 'started' | 'skipped';
  detail?: string;
}

export interface StoredAudit extends AuditEntry {
  id: string;
  at: number;
}

function streamKey(rt: Runtime): string {
  return rt.key('audit');
}

/** The last append of each runtime: one process's entries reach the stream in the order they were made. */
const tails = new WeakMap<Runtime, Promise<unknown>>();

/**
 * Append one entry. Appends from one process are made one after another, in call order, so a
 * caller may leave an entry to be appended beside its work (a command's, while its handler
 * answers) and what that work audits still comes after it.
 */
export function audit(rt: Runtime, entry: AuditEntry): Promise<void> {
  const next = (tails.get(rt) ?? Promise.resolve()).catch(() => undefined).then(() => append(rt, entry));
  tails.set(rt, next);
  return next;
}

async function append(rt: Runtime, entry: AuditEntry): Promise<void> {
  // Entry ids come from the Redis server's clock, so retention is measured on it too (a test
  // clock far from real time must not trim every entry).
  const [sec, usec] = await rt.redis.time();
  const now = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
  const minId = now - rt.config.audit.retentionDays * 86_400_000;
  // uid: with Sentinel the entry is confirmed on the replica; one a failover lost is appended
  // again, one that was kept is not (the retry looks for its uid first).
  const uid = randomUUID();
  const fields = ['json', JSON.stringify(entry), 'targets', ` ${entry.targets.join(' ')} `, 'op', String(entry.opId ?? ''), 'uid', uid];
  let tries = 0;
  try {
    await confirmedWrite(rt.redis, 'an audit entry', async () => {
      if (tries++ > 0) {
        const recent = (await rt.redis.xrevrange(streamKey(rt), '+', '-', 'COUNT', 1000)) as [string, string[]][];
        if (recent.some(([, f]) => f[f.indexOf('uid') + 1] === uid)) return;
      }
      await rt.redis.xadd(streamKey(rt), 'MINID', String(minId), '*', ...fields);
    });
  } catch (e) {
    // The audit must not silently vanish: log loudly with the entry itself.
    rt.log.error({ audit: entry, err: e }, 'could not append to the audit trail');
    throw e;
  }
}

/** Recent entries about a host, VM or job id, newest first. Scans back at most `scan` entries. */
export async function queryAudit(rt: Runtime, target: string, opts: { limit?: number; scan?: number } = {}): Promise<StoredAudit[]> {
  // Read after this process's own appends (a command's entry is appended beside its handler: `audit hyp07` lists itself).
  await tails.get(rt)?.catch(() => undefined);
  const limit = opts.limit ?? 25;
  const raw = (await rt.redis.xrevrange(streamKey(rt), '+', '-', 'COUNT', opts.scan ?? 10_000)) as [string, string[]][];
  const out: StoredAudit[] = [];
  const isJob = /^\d+$/.test(target);
  for (const [id, fields] of raw) {
    const f: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
    const match = isJob ? f.op === target : (f.targets ?? '').toLowerCase().includes(` ${target.toLowerCase()} `);
    if (!match) continue;
    out.push({ ...(JSON.parse(f.json!) as AuditEntry), id, at: Number(id.split('-')[0]) });
    if (out.length >= limit) break;
  }
  return out;
}
