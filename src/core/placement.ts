/**
 * Placement planner (pure, deterministic): which host each VM of a drain goes to.
 *
 * Rules, in order of precedence:
 *  - never the source, never a host in maintenance or cordoned (checkVmOnTarget blocks those);
 *  - compatibility: any blocking finding of checkVmOnTarget excludes the host (warnings ride along);
 *  - anti-affinity is hard here: two VMs of one group never share a target, and a VM never joins
 *    a member already running there;
 *  - capacity: committed memory stays under memoryMiB × (1 − headroom), counting what this plan
 *    already put there;
 *  - spread: largest VMs first, each onto the suitable host with the highest free-memory ratio,
 *    ties broken by host name, so the same input always gives the same plan.
 *
 * Same input, same plan: the result depends only on names, ids and sizes, never on input order.
 */
import type { HostFacts, MigrationMode, VmFacts } from '../adapters/types.js';
import {
  blockFinding,
  checkVmOnTarget,
  DEFAULT_MEMORY_HEADROOM,
  defaultMode,
  formatMiB,
  isBlocking,
  summarizeRefusals,
  type Finding,
} from './prechecks.js';

export type PlacementMode = MigrationMode | 'auto';

export interface PlacementInput {
  /** VMs to move (all currently on `source`). */
  vms: readonly VmFacts[];
  source: HostFacts;
  /** Possible targets; the source, maintenance and cordoned hosts among them are never chosen. */
  candidates: readonly HostFacts[];
  /** VMs on each candidate now, for anti-affinity. Memory comes from HostFacts.memoryUsedMiB. */
  vmsByHost?: Readonly<Record<string, readonly VmFacts[]>>;
  /** 'auto' (default): live for running/paused VMs, cold for powered-off/saved ones. */
  mode?: PlacementMode;
  /** Fraction of each target's memory kept free (default 0.1). */
  memoryHeadroom?: number;
}

export interface Assignment {
  vm: string;
  vmId: string;
  target: string;
  mode: MigrationMode;
  memoryMiB: number;
  /** Why this host, short: "most free memory of 3 suitable hosts". */
  reason: string;
  /** Non-blocking findings for this target, as sentences. */
  warnings: string[];
}

export interface Unplaced {
  vm: string;
  vmId: string;
  mode: MigrationMode;
  memoryMiB: number;
  /** Sentences naming the VM, the host(s) and the reason; hosts refusing for the same reason share one. Never empty. */
  reasons: string[];
  /** Every refusal, per host (structured: code, target, reason). */
  findings: Finding[];
}

export interface PlacementPlan {
  /** In placement order (largest VM first). */
  assignments: Assignment[];
  unplaced: Unplaced[];
}

interface HostState {
  host: HostFacts;
  used: number;
  limit: number;
  /** anti-affinity group -> members there (already running, or planned by this plan). */
  groups: Map<string, { name: string; planned: boolean }[]>;
}

const EPSILON = 1e-9;

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Largest first; then name and id, so input order never matters. */
function placementOrder(a: VmFacts, b: VmFacts): number {
  return b.memoryMiB - a.memoryMiB || byName(a, b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export function planPlacement(input: PlacementInput): PlacementPlan {
  const headroom = input.memoryHeadroom ?? DEFAULT_MEMORY_HEADROOM;
  const moving = new Set(input.vms.map((v) => v.id));
  const seen = new Set<string>();
  const states: HostState[] = [];
  for (const host of [...input.candidates].sort(byName)) {
    if (seen.has(host.name)) continue;
    seen.add(host.name);
    const groups = new Map<string, { name: string; planned: boolean }[]>();
    for (const v of input.vmsByHost?.[host.name] ?? []) {
      // A VM of this plan listed on a candidate (stale snapshot) must not block itself.
      if (!v.antiAffinityGroup || moving.has(v.id)) continue;
      groups.set(v.antiAffinityGroup, [...(groups.get(v.antiAffinityGroup) ?? []), { name: v.name, planned: false }]);
    }
    states.push({ host, used: host.memoryUsedMiB, limit: host.memoryMiB * (1 - headroom), groups });
  }

  const assignments: Assignment[] = [];
  const unplaced: Unplaced[] = [];
  for (const vm of [...input.vms].sort(placementOrder)) {
    const mode = !input.mode || input.mode === 'auto' ? defaultMode(vm) : input.mode;
    const refusals: Finding[] = [];
    const refuse = (h: HostFacts, code: Finding['code'], why: string): void => {
      refusals.push(blockFinding(vm.name, 'cannot move to', h.name, code, why));
    };
    let best: { st: HostState; ratio: number; warnings: string[] } | undefined;
    let suitable = 0;
    for (const st of states) {
      const h = st.host;
      if (h.name === input.source.name) {
        refuse(h, 'same-host', 'it is the host being emptied');
        continue;
      }
      // Memory is judged below against what this plan already committed, not the static facts.
      const findings = checkVmOnTarget(vm, input.source, h, { mode, memoryHeadroom: headroom }).filter((f) => f.code !== 'memory');
      const blocks = findings.filter(isBlocking);
      if (blocks.length) {
        refusals.push(...blocks);
        continue;
      }
      const members = vm.antiAffinityGroup ? st.groups.get(vm.antiAffinityGroup) : undefined;
      if (members?.length) {
        const running = members.filter((m) => !m.planned).map((m) => m.name);
        const planned = members.filter((m) => m.planned).map((m) => m.name);
        const why = running.length ? `${h.name} already runs ${running.join(', ')}` : `${planned.join(', ')} ${planned.length === 1 ? 'goes' : 'go'} there`;
        refuse(h, 'anti-affinity', `${why}, of the same anti-affinity group '${vm.antiAffinityGroup}'`);
        continue;
      }
      if (st.used + vm.memoryMiB > st.limit + EPSILON) {
        refuse(
          h,
          'memory',
          `${h.name} has ${formatMiB(Math.max(0, st.limit - st.used))} of memory free keeping ${Math.round(headroom * 100)}% headroom and ${vm.name} needs ${formatMiB(vm.memoryMiB)}`,
        );
        continue;
      }
      suitable++;
      const ratio = h.memoryMiB > 0 ? (st.limit - st.used) / h.memoryMiB : 0;
      // States are in name order, so a strict ">" keeps the first name on ties.
      if (!best || ratio > best.ratio + EPSILON) best = { st, ratio, warnings: findings.map((f) => f.message) };
    }

    if (!best) {
      unplaced.push({
        vm: vm.name,
        vmId: vm.id,
        mode,
        memoryMiB: vm.memoryMiB,
        reasons: refusals.length ? summarizeRefusals(refusals) : [`${vm.name} cannot move: there is no other host to move it to.`],
        findings: refusals,
      });
      continue;
    }
    best.st.used += vm.memoryMiB;
    if (vm.antiAffinityGroup) {
      best.st.groups.set(vm.antiAffinityGroup, [...(best.st.groups.get(vm.antiAffinityGroup) ?? []), { name: vm.name, planned: true }]);
    }
    assignments.push({
      vm: vm.name,
      vmId: vm.id,
      target: best.st.host.name,
      mode,
      memoryMiB: vm.memoryMiB,
      reason: suitable === 1 ? 'the only suitable host' : `most free memory of ${suitable} suitable hosts`,
      warnings: best.warnings,
    });
  }
  return { assignments, unplaced };
}

// ---------------------------------------------------------------------------------------
// Restore / rollback: VMs going back to their home host (seed 001 rule 3)

export interface HomeMove {
  vm: VmFacts;
  /** Where the VM is now. */
  current: HostFacts;
}

export interface ReturnHomeInput {
  home: HostFacts;
  moves: readonly HomeMove[];
  /** VMs on the home host now (for the anti-affinity warning). */
  homeVms?: readonly VmFacts[];
  /**
   * Restore leaves maintenance before moving VMs back, so a home host still in maintenance
   * (or cordoned) is not a reason to refuse (default true).
   */
  assumeOutOfMaintenance?: boolean;
  memoryHeadroom?: number;
}

export interface ReturnHomePlan {
  moves: { vm: string; vmId: string; from: string; mode: MigrationMode; warnings: string[] }[];
  /** Already on the home host: nothing to do. */
  alreadyHome: string[];
  /** Cannot go home now ("now blocked" drift): one sentence per reason. */
  blocked: { vm: string; vmId: string; from: string; reasons: string[]; findings: Finding[] }[];
}

/**
 * Check each VM's way back home, counting the memory of the VMs planned back before it. The VMs
 * lived there before, so only hard limits block: headroom and anti-affinity only warn.
 */
export function planReturnHome(input: ReturnHomeInput): ReturnHomePlan {
  const assume = input.assumeOutOfMaintenance ?? true;
  const plan: ReturnHomePlan = { moves: [], alreadyHome: [], blocked: [] };
  let used = input.home.memoryUsedMiB;
  const present: VmFacts[] = [...(input.homeVms ?? [])];
  const ordered = [...input.moves].sort((a, b) => byName(a.vm, b.vm) || (a.vm.id < b.vm.id ? -1 : a.vm.id > b.vm.id ? 1 : 0));
  for (const { vm, current } of ordered) {
    if (current.name === input.home.name) {
      plan.alreadyHome.push(vm.name);
      continue;
    }
    const home: HostFacts = {
      ...input.home,
      memoryUsedMiB: used,
      ...(assume ? { maintenance: false, cordoned: false } : {}),
    };
    const mode = defaultMode(vm);
    const findings = checkVmOnTarget(vm, current, home, {
      mode,
      targetVms: present,
      ...(input.memoryHeadroom !== undefined ? { memoryHeadroom: input.memoryHeadroom } : {}),
    });
    const blocks = findings.filter(isBlocking);
    if (blocks.length) {
      plan.blocked.push({ vm: vm.name, vmId: vm.id, from: current.name, reasons: blocks.map((f) => f.message), findings: blocks });
      continue;
    }
    used += vm.memoryMiB;
    present.push(vm);
    plan.moves.push({ vm: vm.name, vmId: vm.id, from: current.name, mode, warnings: findings.map((f) => f.message) });
  }
  return plan;
}
