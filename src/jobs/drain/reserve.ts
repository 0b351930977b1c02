/**
 * Memory reservations: the memory a drain's plan counts on, on each target, held in Redis from
 * the plan until each migration ends. Two drains of one cluster planning side by side
 * (maxInMaintenance >= 2) would otherwise both count the same free memory on a target: a plan
 * reads the cluster, subtracts what other drains reserved, and reserves its own moves in one
 * Lua script that checks them against the others' reservations of that moment (all or nothing).
 *
 * One hash per cluster, field "<opId>|<vmId>", value {target, mib, done?}. A move that ended
 * well is marked done (Redis time) rather than dropped: a plan whose host facts were read before
 * that moment does not see the VM on its target yet, so it still counts the reservation; plans
 * read later see the VM itself. A failed or skipped move, and every pending move of an operation
 * that ended, is dropped.
 */
import type { Runtime } from '../../runtime.js';
import type { HostFacts } from '../../adapters/types.js';
import { DEFAULT_MEMORY_HEADROOM } from '../../core/prechecks.js';
import { fencedEval } from '../fence.js';
import { runScript } from '../../redis-scripts.js';

export interface Reservation {
  target: string;
  mib: number;
  /** Redis time (ms) the migration ended on its target. */
  done?: number;
}

/** Done entries are history after this long: every plan reading facts since then sees the VM. */
const DONE_KEEP_MS = 10 * 60_000;

function key(rt: Runtime, cluster: string): string {
  return rt.key('reserve', cluster);
}

/** Redis's clock (ms): one clock for every process that plans or marks. */
export async function redisNow(rt: Runtime): Promise<number> {
  const [s, us] = await rt.redis.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

function counts(entry: Reservation, factsAt: number): boolean {
  return entry.done === undefined || entry.done > factsAt;
}

/** MiB reserved by other operations per target, that facts read at `factsAt` do not show yet. */
export async function reservedByOthers(rt: Runtime, cluster: string, opId: number, factsAt: number): Promise<Record<string, { mib: number; ops: number[] }>> {
  const all = await rt.redis.hgetall(key(rt, cluster));
  const out: Record<string, { mib: number; ops: number[] }> = {};
  for (const [field, raw] of Object.entries(all)) {
    const owner = Number(field.split('|')[0]);
    const r = JSON.parse(raw) as Reservation;
    if (owner === opId || !counts(r, factsAt)) continue;
    const t = (out[r.target] ??= { mib: 0, ops: [] });
    t.mib += r.mib;
    if (!t.ops.includes(owner)) t.ops.push(owner);
  }
  return out;
}

/** Host facts as a plan must see them: other drains' reserved memory counted as used. */
export function withReserved(facts: HostFacts[], reserved: Record<string, { mib: number }>): HostFacts[] {
  return facts.map((f) => (reserved[f.name] ? { ...f, memoryUsedMiB: f.memoryUsedMiB + reserved[f.name]!.mib } : f));
}

/** What a plan may take on a host: memory under the headroom limit minus what it runs now. */
export function availableMiB(f: HostFacts, headroom = DEFAULT_MEMORY_HEADROOM): number {
  return f.memoryMiB * (1 - headroom) - f.memoryUsedMiB;
}

export interface Shortfall {
  target: string;
  /** MiB other drains hold there now. */
  reserved: number;
  want: number;
  available: number;
}

/**
 * Reserve a plan's moves (replacing this operation's earlier reservations), all or nothing:
 * null when reserved, else the first target that other drains' reservations have filled since
 * the plan read them.
 */
export async function reserveMoves(
  rt: Runtime,
  cluster: string,
  opId: number,
  moves: { vmId: string; target: string; memoryMiB: number }[],
  available: Record<string, number>,
  factsAt: number,
  /** 'add': keep this operation's other reservations (and count them) instead of replacing them. */
  mode: 'replace' | 'add' = 'replace',
): Promise<Shortfall | null> {
  const per = new Map<string, number>();
  for (const m of moves) per.set(m.target, (per.get(m.target) ?? 0) + m.memoryMiB);
  const want = [...per].map(([t, mib]) => [t, mib, available[t] ?? 0]);
  const entries = moves.map((m) => [`${opId}|${m.vmId}`, JSON.stringify({ target: m.target, mib: m.memoryMiB } satisfies Reservation)]);
  const out = (await fencedEval(rt.redis, 'reserve-moves', [key(rt, cluster)], [String(factsAt), String(opId), JSON.stringify(want), JSON.stringify(entries), String(DONE_KEEP_MS), mode])) as string;
  if (out === 'ok') return null;
  const [target, reserved, w, avail] = JSON.parse(out) as [string, number, number, number];
  return { target, reserved, want: w, available: avail };
}

/** Whether this move still holds its reservation (planned, not settled). */
export async function holdsReservation(rt: Runtime, cluster: string, opId: number, vmId: string): Promise<boolean> {
  const raw = await rt.redis.hget(key(rt, cluster), `${opId}|${vmId}`);
  return raw !== null && (JSON.parse(raw) as Reservation).done === undefined;
}

/** A migration ended: on its target (done) or not (the memory is free again). */
export async function settleReservation(rt: Runtime, cluster: string, opId: number, vmId: string, movedThere: boolean): Promise<void> {
  await runScript(rt.redis, 'reserve-settle', [key(rt, cluster)], [`${opId}|${vmId}`, movedThere ? 'done' : 'drop']);
}

/** The operation ended: every move of it that did not happen frees its memory. */
export async function releaseReservations(rt: Runtime, cluster: string, opId: number): Promise<number> {
  return Number(await runScript(rt.redis, 'reserve-release', [key(rt, cluster)], [String(opId)]));
}

/** This operation's reservations (for the card, tests). */
export async function reservationsOf(rt: Runtime, cluster: string, opId: number): Promise<Record<string, Reservation>> {
  const all = await rt.redis.hgetall(key(rt, cluster));
  return Object.fromEntries(
    Object.entries(all)
      .filter(([f]) => f.startsWith(`${opId}|`))
      .map(([f, v]) => [f.slice(String(opId).length + 1), JSON.parse(v) as Reservation]),
  );
}
