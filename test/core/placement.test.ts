import { describe, expect, it } from 'vitest';
import type { HostFacts, PowerState, VmFacts } from '../../src/adapters/types.js';
import { planPlacement, planReturnHome, type PlacementInput, type PlacementPlan } from '../../src/core/placement.js';
import { checkVmOnTarget, isBlocking } from '../../src/core/prechecks.js';
import { mulberry32 } from '../../src/adapters/lab/fleet.js';

const GiB = 1024;

function host(name: string, over: Partial<HostFacts> = {}): HostFacts {
  return {
    name,
    cluster: 'prod-a',
    adapter: 'lab',
    cpu: { vendor: 'intel', family: 'skylake', baseline: 'intel-skylake', cores: 32 },
    memoryMiB: 100 * GiB,
    memoryUsedMiB: 0,
    maintenance: false,
    portGroups: [{ name: 'prod', vlan: 100 }],
    datastores: [{ name: 'csv1', shared: true, capacityGiB: 10_000, freeGiB: 5_000 }],
    migrationNetwork: true,
    isoLibraries: [],
    hbas: [],
    ...over,
  };
}

function vm(name: string, over: Partial<VmFacts> = {}): VmFacts {
  return {
    name,
    id: `id-${name}`,
    host: 'src',
    power: 'running',
    ha: true,
    memoryMiB: 8 * GiB,
    cpus: 2,
    disks: [{ path: `${name}.vhdx`, datastore: 'csv1', sizeGiB: 40 }],
    networks: [{ portGroup: 'prod' }],
    devices: [],
    affinity: { cpu: false, memory: false },
    vfc: [],
    ...over,
  };
}

const countBy = (plan: PlacementPlan): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const a of plan.assignments) out[a.target] = (out[a.target] ?? 0) + 1;
  return out;
};

describe('planPlacement', () => {
  const source = host('src');

  it('spreads 10 equal VMs over 5 equal hosts, 2 each', () => {
    const vms = Array.from({ length: 10 }, (_, i) => vm(`vm${String(i).padStart(2, '0')}`));
    const candidates = ['h1', 'h2', 'h3', 'h4', 'h5'].map((n) => host(n));
    const plan = planPlacement({ vms, source, candidates });
    expect(plan.unplaced).toEqual([]);
    expect(countBy(plan)).toEqual({ h1: 2, h2: 2, h3: 2, h4: 2, h5: 2 });
  });

  it('puts the largest VM first onto the emptiest host, ties by name', () => {
    const plan = planPlacement({
      vms: [vm('small', { memoryMiB: 2 * GiB }), vm('large', { memoryMiB: 32 * GiB }), vm('mid', { memoryMiB: 16 * GiB })],
      source,
      candidates: [host('hb', { memoryUsedMiB: 10 * GiB }), host('ha', { memoryUsedMiB: 10 * GiB }), host('hc', { memoryUsedMiB: 40 * GiB })],
    });
    expect(plan.assignments.map((a) => [a.vm, a.target])).toEqual([
      ['large', 'ha'],
      ['mid', 'hb'],
      ['small', 'hb'],
    ]);
    expect(plan.assignments[0]!.reason).toBe('most free memory of 3 suitable hosts');
  });

  it('compares free memory as a ratio, so big hosts take proportionally more', () => {
    const plan = planPlacement({
      vms: Array.from({ length: 10 }, (_, i) => vm(`v${i}`)),
      source,
      candidates: [host('big', { memoryMiB: 400 * GiB }), host('small', { memoryMiB: 100 * GiB })],
    });
    expect(countBy(plan)).toEqual({ big: 8, small: 2 });
  });

  it('never picks the source, a host in maintenance or a cordoned one', () => {
    const plan = planPlacement({
      vms: [vm('web01')],
      source,
      candidates: [source, host('m', { maintenance: true }), host('c', { cordoned: true })],
    });
    expect(plan.assignments).toEqual([]);
    expect(plan.unplaced[0]!.reasons).toEqual([
      'web01 cannot move to c: c is cordoned (no new placements).',
      'web01 cannot move to m: m is in maintenance.',
      'web01 cannot move to src: it is the host being emptied.',
    ]);
  });

  it('says so when there is no candidate at all', () => {
    const plan = planPlacement({ vms: [vm('web01')], source, candidates: [] });
    expect(plan.unplaced).toEqual([
      { vm: 'web01', vmId: 'id-web01', mode: 'live', memoryMiB: 8 * GiB, reasons: ['web01 cannot move: there is no other host to move it to.'], findings: [] },
    ]);
  });

  it('excludes a host only for blocking findings; warnings ride along', () => {
    const plan = planPlacement({
      vms: [vm('web01')],
      source,
      candidates: [host('amd', { cpu: { vendor: 'amd', family: 'zen3', cores: 64 } }), host('other', { cluster: 'prod-b' })],
    });
    expect(plan.assignments).toHaveLength(1);
    expect(plan.assignments[0]).toMatchObject({ target: 'other', reason: 'the only suitable host', warnings: ['other is in cluster prod-b, not prod-a like src.'] });
  });

  it('keeps memory headroom, counting what it already placed', () => {
    // 90 GiB usable per host: 2 × 40 GiB fit on each, the fifth does not.
    const vms = Array.from({ length: 5 }, (_, i) => vm(`v${i}`, { memoryMiB: 40 * GiB }));
    const plan = planPlacement({ vms, source, candidates: [host('h1'), host('h2')] });
    expect(countBy(plan)).toEqual({ h1: 2, h2: 2 });
    expect(plan.unplaced.map((u) => u.vm)).toEqual(['v4']);
    expect(plan.unplaced[0]!.reasons).toEqual([
      'v4 cannot move to h1: h1 has 10 GiB of memory free keeping 10% headroom and v4 needs 40 GiB.',
      'v4 cannot move to h2: h2 has 10 GiB of memory free keeping 10% headroom and v4 needs 40 GiB.',
    ]);
  });

  it('keeps anti-affinity groups apart, including members already on the hosts', () => {
    const plan = planPlacement({
      vms: [vm('db01', { antiAffinityGroup: 'db' }), vm('db02', { antiAffinityGroup: 'db' }), vm('db03', { antiAffinityGroup: 'db' })],
      source,
      candidates: [host('h1'), host('h2'), host('h3')],
      vmsByHost: { h3: [vm('db09', { host: 'h3', antiAffinityGroup: 'db' })] },
    });
    expect(plan.assignments.map((a) => [a.vm, a.target])).toEqual([
      ['db01', 'h1'],
      ['db02', 'h2'],
    ]);
    expect(plan.unplaced[0]!.reasons).toEqual([
      "db03 cannot move to h1: db01 goes there, of the same anti-affinity group 'db'.",
      "db03 cannot move to h2: db02 goes there, of the same anti-affinity group 'db'.",
      "db03 cannot move to h3: h3 already runs db09, of the same anti-affinity group 'db'.",
    ]);
  });

  it('ignores a VM of the plan listed on a candidate (stale snapshot)', () => {
    const db01 = vm('db01', { antiAffinityGroup: 'db' });
    const plan = planPlacement({ vms: [db01], source, candidates: [host('h1')], vmsByHost: { h1: [db01] } });
    expect(plan.assignments.map((a) => a.target)).toEqual(['h1']);
  });

  it('moves powered-off VMs cold in auto mode, skipping live-only checks', () => {
    const plan = planPlacement({
      vms: [vm('off1', { power: 'off', affinity: { cpu: true, memory: false } })],
      source,
      candidates: [host('h1', { migrationNetwork: false })],
    });
    expect(plan.assignments).toMatchObject([{ vm: 'off1', target: 'h1', mode: 'cold' }]);
    const forced = planPlacement({ vms: [vm('off1', { power: 'off', affinity: { cpu: true, memory: false } })], source, candidates: [host('h1')], mode: 'live' });
    expect(forced.unplaced).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------------------
// Property tests: random fleets from a seeded PRNG (no fast-check; mulberry32 is enough).


interface Gen {
  rand: () => number;
  int(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
}

function gen(seed: number): Gen {
  const rand = mulberry32(seed);
  return {
    rand,
    int: (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1)),
    pick: (xs) => xs[Math.floor(rand() * xs.length)]!,
    chance: (p) => rand() < p,
  };
}

function shuffle<T>(g: Gen, xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = g.int(0, i);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const CPUS = [
  { vendor: 'intel', family: 'skylake', baseline: 'intel-skylake', cores: 32 },
  { vendor: 'intel', family: 'cascadelake', baseline: 'intel-skylake', cores: 32 },
  { vendor: 'intel', family: 'icelake', baseline: 'intel-icelake', cores: 48 },
  { vendor: 'amd', family: 'zen3', baseline: 'amd-zen3', cores: 64 },
];
const PGS = [
  { name: 'prod', vlan: 100 },
  { name: 'dmz', vlan: 120 },
  { name: 'mgmt', vlan: 10 },
  { name: 'backup', vlan: 20 },
];
const GROUPS = ['db', 'web', 'dc'];
const POWER: PowerState[] = ['running', 'running', 'running', 'paused', 'off', 'saved'];

function randomFleet(seed: number): PlacementInput {
  const g = gen(seed);
  const mkHost = (name: string): HostFacts => {
    const memoryMiB = g.int(16, 512) * GiB;
    return host(name, {
      cpu: g.chance(0.8) ? CPUS[0]! : g.pick(CPUS),
      memoryMiB,
      memoryUsedMiB: Math.floor(memoryMiB * g.rand() * 0.95),
      maintenance: g.chance(0.15),
      ...(g.chance(0.1) ? { cordoned: true } : {}),
      portGroups: PGS.filter((p, i) => i === 0 || g.chance(0.85)).map((p) => (g.chance(0.05) ? { ...p, vlan: p.vlan + 1 } : p)),
      datastores: [
        { name: 'csv1', shared: true, capacityGiB: 10_000, freeGiB: 5_000 },
        ...(g.chance(0.8) ? [{ name: 'csv2', shared: true, capacityGiB: 10_000, freeGiB: 5_000 }] : []),
        { name: `local-${name}`, shared: false, capacityGiB: 1_000, freeGiB: 500 },
      ],
      migrationNetwork: g.chance(0.92),
      isoLibraries: g.chance(0.5) ? ['[csv1] iso'] : [],
    });
  };
  const source = mkHost('src');
  source.maintenance = false;
  source.cordoned = false;
  source.portGroups = PGS;
  const names = shuffle(
    g,
    Array.from({ length: g.int(0, 9) }, (_, i) => `hyp${String(i + 1).padStart(2, '0')}`),
  );
  const candidates = names.map(mkHost);
  if (g.chance(0.1)) candidates.push(source); // the planner must still never pick it
  const mkVm = (name: string, on: string): VmFacts => {
    const power = g.pick(POWER);
    const v = vm(name, {
      id: `uuid-${name}`,
      host: on,
      power,
      ha: g.chance(0.8),
      memoryMiB: g.pick([512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]),
      disks: [{ path: `${name}.vmdk`, datastore: g.chance(0.85) ? g.pick(['csv1', 'csv2']) : `local-${on}`, sizeGiB: g.int(10, 500) }],
      networks: PGS.filter((_, i) => i === 0 || g.chance(0.2)).map((p) => ({ portGroup: p.name })),
      devices: g.chance(0.1) ? [{ kind: 'cdrom', connected: true, backing: g.chance(0.5) ? '[csv1] iso/x.iso' : '/home/x.iso' }] : [],
      affinity: { cpu: g.chance(0.05), memory: g.chance(0.03) },
    });
    if (g.chance(0.4)) v.antiAffinityGroup = g.pick(GROUPS);
    return v;
  };
  const vms = Array.from({ length: g.int(0, 25) }, (_, i) => mkVm(`vm${String(i).padStart(3, '0')}`, 'src'));
  // Duplicate-looking names with distinct ids: the planner orders by id on ties.
  if (g.chance(0.1) && vms.length) vms.push({ ...vms[0]!, id: 'uuid-dup' });
  const vmsByHost: Record<string, VmFacts[]> = {};
  for (const h of candidates) {
    if (h.name === 'src') continue;
    vmsByHost[h.name] = Array.from({ length: g.int(0, 3) }, (_, i) => mkVm(`${h.name}-vm${i}`, h.name));
  }
  return { vms, source, candidates, vmsByHost, mode: g.pick(['auto', 'auto', 'live', 'cold'] as const), memoryHeadroom: g.pick([0, 0.1, 0.2]) };
}

const CASES = 300;
const fleets = Array.from({ length: CASES }, (_, i) => ({ seed: 1000 + i, input: randomFleet(1000 + i) }));

describe(`planPlacement properties (${CASES} seeded random fleets)`, () => {
  it('the generator produces varied fleets (sanity)', () => {
    const placed = fleets.reduce((s, f) => s + planPlacement(f.input).assignments.length, 0);
    const unplaced = fleets.reduce((s, f) => s + planPlacement(f.input).unplaced.length, 0);
    expect(placed).toBeGreaterThan(500);
    expect(unplaced).toBeGreaterThan(200);
  });

  it.each(fleets)('seed $seed', ({ input }) => {
    const plan = planPlacement(input);
    const headroom = input.memoryHeadroom ?? 0.1;
    const hosts = new Map(input.candidates.map((h) => [h.name, h]));
    const vms = new Map(input.vms.map((v) => [v.id, v]));

    // Every VM exactly once, either assigned or unplaced with reasons naming it.
    const ids = [...plan.assignments.map((a) => a.vmId), ...plan.unplaced.map((u) => u.vmId)];
    expect([...ids].sort()).toEqual(input.vms.map((v) => v.id).sort());
    for (const u of plan.unplaced) {
      expect(u.reasons.length).toBeGreaterThan(0);
      for (const r of u.reasons) expect(r.startsWith(`${u.vm} `)).toBe(true);
    }

    const load = new Map<string, number>();
    const groupsOn = new Map<string, Set<string>>();
    for (const a of plan.assignments) {
      const target = hosts.get(a.target)!;
      const v = vms.get(a.vmId)!;
      // Never the source, never maintenance or cordoned, always a candidate.
      expect(target).toBeDefined();
      expect(a.target).not.toBe(input.source.name);
      expect(target.maintenance).toBe(false);
      expect(target.cordoned ?? false).toBe(false);
      // Compatible: no blocking finding other than memory (judged with the plan's own load below).
      const blocks = checkVmOnTarget(v, input.source, target, { mode: a.mode }).filter((f) => isBlocking(f) && f.code !== 'memory');
      expect(blocks).toEqual([]);
      load.set(a.target, (load.get(a.target) ?? 0) + v.memoryMiB);
      // Anti-affinity: not with a planned member, nor with one already there.
      if (v.antiAffinityGroup) {
        const set = groupsOn.get(a.target) ?? new Set<string>();
        expect(set.has(v.antiAffinityGroup)).toBe(false);
        set.add(v.antiAffinityGroup);
        groupsOn.set(a.target, set);
        const existing = (input.vmsByHost?.[a.target] ?? []).filter((o) => o.antiAffinityGroup === v.antiAffinityGroup && !vms.has(o.id));
        expect(existing).toEqual([]);
      }
    }
    // Never over capacity (headroom kept).
    for (const [name, added] of load) {
      const h = hosts.get(name)!;
      expect(h.memoryUsedMiB + added).toBeLessThanOrEqual(h.memoryMiB * (1 - headroom) + 1e-6);
    }
    // Unplaced only when truly nowhere: at the end state, every usable host is full, blocked or has a group member.
    for (const u of plan.unplaced) {
      const v = vms.get(u.vmId)!;
      for (const h of hosts.values()) {
        if (h.name === input.source.name) continue;
        const blocked = checkVmOnTarget(v, input.source, h, { mode: u.mode }).some((f) => isBlocking(f) && f.code !== 'memory');
        const full = h.memoryUsedMiB + (load.get(h.name) ?? 0) + v.memoryMiB > h.memoryMiB * (1 - headroom) + 1e-6;
        const grouped =
          v.antiAffinityGroup !== undefined &&
          (groupsOn.get(h.name)?.has(v.antiAffinityGroup) || (input.vmsByHost?.[h.name] ?? []).some((o) => o.antiAffinityGroup === v.antiAffinityGroup && !vms.has(o.id)));
        expect(blocked || full || grouped, `${v.name} could have gone to ${h.name}`).toBe(true);
      }
    }
    // Deterministic: the same input gives the same plan, and so does any order of it.
    expect(planPlacement(input)).toEqual(plan);
    const g = gen(input.vms.length * 7919 + input.candidates.length);
    expect(planPlacement({ ...input, vms: shuffle(g, input.vms), candidates: shuffle(g, input.candidates) })).toEqual(plan);
  });
});

// ---------------------------------------------------------------------------------------

describe('planReturnHome (restore / rollback)', () => {
  const home = host('hyp03', { maintenance: true, memoryUsedMiB: 70 * GiB });
  const away = host('hyp05');

  it('sends VMs home, ignoring the maintenance restore is about to leave', () => {
    const busy = { ...home, memoryUsedMiB: 75 * GiB };
    const plan = planReturnHome({ home: busy, moves: [{ vm: vm('web02'), current: away }, { vm: vm('web01'), current: away }, { vm: vm('db01'), current: busy }] });
    expect(plan.moves.map((m) => [m.vm, m.from, m.mode])).toEqual([
      ['web01', 'hyp05', 'live'],
      ['web02', 'hyp05', 'live'],
    ]);
    expect(plan.alreadyHome).toEqual(['db01']);
    // 75 + 8 GiB is fine; 83 + 8 GiB crosses the 10% headroom: a warning, not a refusal.
    expect(plan.moves[0]!.warnings).toEqual([]);
    expect(plan.moves[1]!.warnings).toEqual(['web02 can move to hyp03, but hyp03 would be 91% committed afterwards (headroom 10%).']);
  });

  it('refuses the maintenance flag when asked to take it at face value', () => {
    const plan = planReturnHome({ home, moves: [{ vm: vm('web01'), current: away }], assumeOutOfMaintenance: false });
    expect(plan.blocked[0]!.reasons).toEqual(['web01 cannot move to hyp03: hyp03 is in maintenance.']);
  });

  it('counts the memory of VMs already going home, and reports what is now blocked', () => {
    const plan = planReturnHome({
      home,
      moves: ['a', 'b', 'c', 'd'].map((n) => ({ vm: vm(n, { memoryMiB: 10 * GiB }), current: away })),
      homeVms: [vm('db09', { antiAffinityGroup: 'db' })],
    });
    expect(plan.moves.map((m) => m.vm)).toEqual(['a', 'b', 'c']);
    expect(plan.blocked).toMatchObject([
      { vm: 'd', vmId: 'id-d', from: 'hyp05', reasons: ['d cannot move to hyp03: hyp03 has 0 MiB of memory free and d needs 10 GiB.'], findings: [{ code: 'memory', target: 'hyp03' }] },
    ]);
  });

  it('warns (does not refuse) on anti-affinity at home, and blocks on drift such as a new device', () => {
    const plan = planReturnHome({
      home: host('hyp03'),
      moves: [
        { vm: vm('db01', { antiAffinityGroup: 'db' }), current: away },
        { vm: vm('db02', { antiAffinityGroup: 'db', devices: [{ kind: 'cdrom', connected: true, hostDevice: true }] }), current: away },
      ],
    });
    expect(plan.moves.map((m) => m.vm)).toEqual(['db01']);
    expect(plan.blocked.map((b) => b.vm)).toEqual(['db02']);
    const both = planReturnHome({ home: host('hyp03'), moves: [{ vm: vm('db01', { antiAffinityGroup: 'db' }), current: away }, { vm: vm('db02', { antiAffinityGroup: 'db' }), current: away }] });
    expect(both.moves[1]!.warnings).toEqual(["db02 can move to hyp03, but hyp03 already runs db01 of anti-affinity group 'db'."]);
  });
});
