/**
 * The drain ledger (seed 001 rule 3): where every VM of a host was before the drain, written
 * to Redis before anything moves. `restore` reads it to bring VMs home; it has no TTL, so it
 * survives restarts and waits as long as the maintenance lasts. One current ledger per host;
 * a finished one (restored, rolled back) is kept for history until the next drain replaces it.
 */
import type { Runtime } from '../../runtime.js';
import type { PowerState } from '../../adapters/types.js';
import { fencedEval } from '../fence.js';

export interface LedgerVm {
  name: string;
  /** Stable platform id: a VM found under another name with this id was renamed. */
  id: string;
  /**
   * The host it belongs to. Normally the drained host; a VM that was on it only because another
   * host's drain (still open) had moved it there keeps that host as its home, and `homeOpId`
   * names the drain whose ledger brings it home.
   */
  home: string;
  homeOpId?: number;
  power: PowerState;
  ha: boolean;
  memoryMiB: number;
  /** Where the drain plan sends it (absent: it stays, e.g. powered off or saved in place). */
  target?: string;
  action: string;
}

export type LedgerStatus = 'draining' | 'drained' | 'rolled-back' | 'restoring' | 'restored';

export interface Ledger {
  host: string;
  cluster: string;
  opId: number;
  requester: string;
  createdAt: number;
  status: LedgerStatus;
  vms: LedgerVm[];
  /** The op that restored it, when restored. */
  restoredBy?: number;
  /** VMs that restore closed the ledger without (a precheck blocked their way home). */
  leftOut?: string[];
}

function key(rt: Runtime, host: string): string {
  return rt.key('ledger', host);
}

export async function readLedger(rt: Runtime, host: string): Promise<Ledger | null> {
  const raw = await rt.redis.get(key(rt, host));
  return raw ? (JSON.parse(raw) as Ledger) : null;
}

/**
 * VMs that other hosts' open ledgers place away from home, by VM id: a drain of the host they
 * sit on now must record their real home, not the host it drains.
 */
export async function awayFromHome(rt: Runtime, hosts: string[], except: string): Promise<Map<string, { home: string; opId: number }>> {
  const others = hosts.filter((h) => h !== except);
  const out = new Map<string, { home: string; opId: number }>();
  if (!others.length) return out;
  const raws = await rt.redis.mget(others.map((h) => key(rt, h)));
  for (const raw of raws) {
    if (!raw) continue;
    const l = JSON.parse(raw) as Ledger;
    if (!isOpen(l)) continue;
    // The recorded home, which is already the original one when the ledger itself chained it.
    for (const v of l.vms) if (v.home !== except) out.set(v.id, { home: v.home, opId: v.homeOpId ?? l.opId });
  }
  return out;
}

/** Where an open drain ledger of these hosts says this VM belongs (the original home when chained). */
export async function ledgerHome(rt: Runtime, hosts: string[], vmId: string): Promise<{ home: string; opId: number } | null> {
  if (!hosts.length) return null;
  let found: { home: string; opId: number } | null = null;
  for (const raw of await rt.redis.mget(hosts.map((h) => key(rt, h)))) {
    if (!raw) continue;
    const l = JSON.parse(raw) as Ledger;
    const v = isOpen(l) ? l.vms.find((x) => x.id === vmId) : undefined;
    if (v && (!found || v.home !== l.host)) found = { home: v.home, opId: v.homeOpId ?? l.opId };
  }
  return found;
}

/** A ledger restore has work in: the drain ran (or is running) and nobody restored it yet. */
export function isOpen(l: Ledger | null): boolean {
  return l !== null && (l.status === 'draining' || l.status === 'drained' || l.status === 'restoring');
}

/**
 * Write the ledger for this drain unless it is already there (a resumed job must not replace
 * the snapshot taken before the first move). Refuses to overwrite another drain's open ledger.
 */
export async function writeLedger(rt: Runtime, ledger: Ledger): Promise<Ledger> {
  const out = (await fencedEval(rt.redis, 'ledger-write', [key(rt, ledger.host)], [JSON.stringify(ledger), String(ledger.opId)])) as string;
  return JSON.parse(out) as Ledger;
}

export async function setLedgerStatus(rt: Runtime, host: string, status: LedgerStatus, extra: Partial<Ledger> = {}): Promise<void> {
  const l = await readLedger(rt, host);
  if (!l) return;
  await fencedEval(rt.redis, 'fenced-set', [key(rt, host)], [JSON.stringify({ ...l, ...extra, status })]);
}
