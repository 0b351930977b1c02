/**
 * The audit trail: append-only, in a Redis stream. One entry per command, approval decision
 * and mutating adapter call: who, what, where, approved by whom, outcome, job id. Retention is
 * configuration (audit.retentionDays), enforced by trimming on append (XADD MINID).
 *
 * Each entry is also indexed by every target and by its job (a sorted set of entry ids each,
 * written in the same script as the entry), so `audit hyp05` finds hyp05's entries however
 * many entries about other things came after them (issue 13: scanning the newest 10,000 let
 * 10,100 refused commands hide two real ones).
 */
import { randomUUID } from 'node:crypto';
import type { Runtime } from '../runtime.js';
import { confirmedWrite } from '../redis-confirm.js';
import { runScript } from '../redis-scripts.js';

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

/** Prefix of the index keys: `<prefix>:audit:idx:t:<target>` and `<prefix>:audit:idx:op:<id>`. */
function indexPrefix(rt: Runtime): string {
  return `${rt.key('audit', 'idx')}:`;
}

/** The index a query reads: a job id, else a host or VM name (case does not matter). */
function indexName(target: string): string {
  return /^\d+$/.test(target) ? `op:${target}` : `t:${target.toLowerCase()}`;
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
  const indexes = [...new Set([...entry.targets.filter((t) => t && !/^\d+$/.test(t)).map(indexName), ...(entry.opId !== undefined ? [`op:${entry.opId}`] : [])])];
  const retentionMs = rt.config.audit.retentionDays * 86_400_000;
  let tries = 0;
  try {
    await confirmedWrite(rt.redis, 'an audit entry', async () => {
      if (tries++ > 0) {
        const recent = (await rt.redis.xrevrange(streamKey(rt), '+', '-', 'COUNT', 1000)) as [string, string[]][];
        if (recent.some(([, f]) => f[f.indexOf('uid') + 1] === uid)) return;
      }
      await runScript(rt.redis, 'audit-append', [streamKey(rt)], [String(minId), indexPrefix(rt), String(retentionMs), String(indexes.length), ...indexes, ...fields]);
    });
  } catch (e) {
    // The audit must not silently vanish: log loudly with the entry itself.
    rt.log.error({ audit: entry, err: e }, 'could not append to the audit trail');
    throw e;
  }
}

type RawEntry = [string, string[]];

function fieldsOf(fields: string[]): Record<string, string> {
  const f: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
  return f;
}

function parseEntry([id, fields]: RawEntry): StoredAudit {
  return { ...(JSON.parse(fieldsOf(fields).json!) as AuditEntry), id, at: Number(id.split('-')[0]) };
}

function matches([, fields]: RawEntry, target: string): boolean {
  const f = fieldsOf(fields);
  return /^\d+$/.test(target) ? f.op === target : (f.targets ?? '').toLowerCase().includes(` ${target.toLowerCase()} `);
}

/** Newest first by stream id (ms, then sequence; the index orders one millisecond's ids as text). */
function newestFirst(a: StoredAudit, b: StoredAudit): number {
  const [am, as] = a.id.split('-').map(Number) as [number, number];
  const [bm, bs] = b.id.split('-').map(Number) as [number, number];
  return bm - am || bs - as;
}

/**
 * Recent entries about a host, VM or job id, newest first: from the index, then (when the index
 * holds fewer than `limit`) from entries appended before the index existed, scanning back at most
 * `scan` of those.
 */
export async function queryAudit(rt: Runtime, target: string, opts: { limit?: number; scan?: number } = {}): Promise<StoredAudit[]> {
  // Read after this process's own appends (a command's entry is appended beside its handler: `audit hyp07` lists itself).
  await tails.get(rt)?.catch(() => undefined);
  const limit = opts.limit ?? 25;
  const stream = streamKey(rt);
  const ids = await rt.redis.zrevrange(indexPrefix(rt) + indexName(target), 0, limit - 1);
  const out: StoredAudit[] = [];
  if (ids.length) {
    const pipe = rt.redis.pipeline();
    for (const id of ids) pipe.xrange(stream, id, id);
    for (const [err, res] of (await pipe.exec()) ?? []) {
      if (err) throw err;
      // An id whose entry retention trimmed since: nothing to show.
      const entry = (res as RawEntry[])[0];
      if (entry) out.push(parseEntry(entry));
    }
    out.sort(newestFirst);
  }
  if (out.length >= limit) return out;
  // Before the index: the stream itself, older than the first indexed entry.
  const since = await rt.redis.get(`${indexPrefix(rt)}since`);
  const older = (await rt.redis.xrevrange(stream, since ? `(${since}` : '+', '-', 'COUNT', opts.scan ?? 10_000)) as RawEntry[];
  for (const raw of older) {
    if (!matches(raw, target)) continue;
    out.push(parseEntry(raw));
    if (out.length >= limit) break;
  }
  return out;
}
