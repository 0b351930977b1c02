/**
 * The drain's data: what was asked, the frozen plan, and the operation's typed parameters.
 * Shared by the runner (workflows/drain.ts), its narration and its card.
 */
import type { LedgerVm } from './ledger.js';
import type { Deps } from '../context.js';
import { paramsOf, type Operation } from '../operations.js';

export const KIND = 'drain';

export interface DrainRequest {
  host: string;
  dryRun: boolean;
  rollback: 'auto' | 'hold';
  parallel?: number;
  saveNonHa: boolean;
  coldMigrate: boolean;
}

export interface PlannedMove {
  vm: string;
  vmId: string;
  target: string;
  mode: 'live' | 'cold';
  memoryMiB: number;
}

export interface DrainPlan {
  ok: boolean;
  lines: string[];
  moves: PlannedMove[];
  stays: { vm: string; vmId: string; action: string; sentence: string }[];
  ledger: LedgerVm[];
  unreachable: Record<string, string>;
}

export interface DrainParams extends DrainRequest {
  cluster: string;
  stage?: string;
  round?: number;
  failed?: string[];
  /** Plans made so far (a replan makes another). */
  plans?: number;
  /** What its waits keep (drain/control.ts waitState reads them for drain and migrate alike). */
  approvalId?: string;
  waitingSince?: number;
  override?: boolean;
  durationMs?: number;
}

export function drainParams(op: Operation): DrainParams {
  return paramsOf<DrainParams>(op, [KIND]);
}

export async function readPlan(deps: Deps, opId: number): Promise<DrainPlan | null> {
  const raw = await deps.rt.redis.get(deps.ops.keyOf(opId, 'plan'));
  return raw ? (JSON.parse(raw) as DrainPlan) : null;
}

export function concurrencyFor(deps: Deps, p: DrainParams): number {
  return p.parallel ?? deps.rt.config.clusters[p.cluster]?.migrationConcurrency ?? deps.rt.config.limits.migrationConcurrency;
}
