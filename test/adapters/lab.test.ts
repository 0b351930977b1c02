import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { generateFleet } from '../../src/adapters/lab/fleet.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import { findStalePorts } from '../../src/core/stale-ports.js';
import { parseConfig } from '../../src/config/load.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { silentLogger } from '../../src/log.js';
import { fastLabYaml, uniquePrefix } from '../support/harness.js';
import { AdapterError } from '../../src/adapters/types.js';

describe('lab fleet generator', () => {
  const clusters = { a: ['hyp01', 'hyp02', 'hyp03', 'hyp04', 'hyp05', 'hyp06', 'hyp07'], b: ['hyp08', 'hyp09', 'hyp10'] };

  it('is deterministic from the seed', () => {
    expect(JSON.stringify([...generateFleet(42, clusters)])).toBe(JSON.stringify([...generateFleet(42, clusters)]));
    expect(JSON.stringify([...generateFleet(42, clusters)])).not.toBe(JSON.stringify([...generateFleet(43, clusters)]));
  });

  it('has what the workflows need: HA and non-HA, powered-off, NPIV, stale ports, mixed CPUs', () => {
    const big = generateFleet(42, { a: Array.from({ length: 24 }, (_, i) => `h${i}`), b: ['b1', 'b2'], c: Array.from({ length: 24 }, (_, i) => `k${i}`) });
    const vms = [...big.values()].flatMap((s) => s.vms);
    expect(vms.some((v) => !v.ha && v.power === 'running')).toBe(true);
    expect(vms.some((v) => v.ha && v.power !== 'running')).toBe(true);
    expect(vms.some((v) => v.vfc.length > 0)).toBe(true);
    expect(new Set([...big.values()].map((s) => s.facts.cpu.vendor)).size).toBe(2);
    const stale = [...big.values()].flatMap((s) => {
      const endpoints = s.vms.filter((v) => v.power === 'running').flatMap((v) => v.vfc.map((a) => a.wwpns.find((w) => s.vports.some((p) => p.wwpn === w))).filter((w): w is string => !!w));
      return findStalePorts({ host: s.facts.name, hbas: s.facts.hbas, virtualPorts: s.vports, endpointWwpns: endpoints });
    });
    expect(stale.length).toBeGreaterThan(0);
    // Every name is unique across the fleet.
    expect(new Set(vms.map((v) => v.name)).size).toBe(vms.length);
  });
});

describe('lab adapter over Redis', () => {
  let rt: Runtime;
  beforeAll(() => {
    rt = createRuntime({ loaded: parseConfig(fastLabYaml(), 'test'), redisUrl: inject('redisUrl'), log: silentLogger(), prefix: uniquePrefix('lab') });
  });
  afterAll(() => rt.close());

  it('two runtimes over one Redis see one lab', async () => {
    const other = createRuntime({ loaded: parseConfig(fastLabYaml(), 'test'), redisUrl: inject('redisUrl'), log: silentLogger(), prefix: rt.prefix });
    const a = rt.adapters.forHost('hyp01');
    await a.enterMaintenance('hyp01');
    expect((await other.adapters.forHost('hyp01').describeHost('hyp01')).maintenance).toBe(true);
    await a.exitMaintenance('hyp01');
    expect((await other.adapters.forHost('hyp01').describeHost('hyp01')).maintenance).toBe(false);
    await other.close();
  });

  it('migrates a running VM with progress, keeps memory accounting, and moves its NPIV ports', async () => {
    const a = rt.adapters.forHost('hyp02');
    const vms = await a.listVms('hyp02');
    const vm = vms.find((v) => v.power === 'running')!;
    const progress: number[] = [];
    const res = await a.migrateVm({ vm: vm.name, source: 'hyp02', target: 'hyp03', mode: 'live' }, (p) => progress.push(p.percent));
    expect(res.host).toBe('hyp03');
    expect(progress.at(-1)).toBe(100);
    expect((await a.listVms('hyp02')).some((v) => v.name === vm.name)).toBe(false);
    expect((await a.findVm(vm.name))?.host).toBe('hyp03');
    if (vm.vfc.length) {
      const src = await a.npivInventory('hyp02');
      expect(src.virtualPorts.some((p) => vm.vfc.some((f) => f.wwpns.includes(p.wwpn)))).toBe(false);
    }
  });

  it('injected faults: unreachable, failing migration at 60%, linger leaves ports behind', async () => {
    const a = rt.adapters.forHost('hyp04');
    await setLabFault(rt.redis, rt.prefix, 'hyp04', 'unreachable');
    await expect(a.npivInventory('hyp04')).rejects.toThrow(/did not answer/);
    await setLabFault(rt.redis, rt.prefix, 'hyp04', null);

    const vm = (await a.listVms('hyp04')).find((v) => v.power === 'running')!;
    await setLabFault(rt.redis, rt.prefix, `vm:${vm.name}`, 'migrate-fail-once');
    const err = await a.migrateVm({ vm: vm.name, source: 'hyp04', target: 'hyp05', mode: 'live' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterError);
    expect((err as AdapterError).message).toMatch(/failed at 60%/);
    expect((await a.findVm(vm.name))?.host).toBe('hyp04');
    // The fault was "once": the retry succeeds.
    await a.migrateVm({ vm: vm.name, source: 'hyp04', target: 'hyp05', mode: 'live' });

    const withFc = (await a.listVms('hyp05')).find((v) => v.power === 'running' && v.vfc.length > 0);
    if (withFc) {
      await setLabFault(rt.redis, rt.prefix, 'hyp05', 'linger');
      const res = await a.migrateVm({ vm: withFc.name, source: 'hyp05', target: 'hyp06', mode: 'live' });
      expect(res.lingeringPorts?.length).toBeGreaterThan(0);
      const stale = findStalePorts(await a.npivInventory('hyp05'));
      expect(stale.map((p) => p.wwpn)).toEqual(expect.arrayContaining(res.lingeringPorts!.map((p) => p.wwpn)));
      await setLabFault(rt.redis, rt.prefix, 'hyp05', null);
    }
  });

  it('faults per VM on the n-th call, once, and after switch-over; per host on the n-th call', async () => {
    const a = rt.adapters.forHost('hyp09');
    const [v1, v2] = (await a.listVms('hyp09')).filter((v) => v.power === 'running' && v.vfc.length === 0);
    // The second migration of v1 fails at 60%; the first and the third go through.
    await setLabFault(rt.redis, rt.prefix, `vm:${v1!.name}`, 'migrate-fail@2');
    await a.migrateVm({ vm: v1!.name, source: 'hyp09', target: 'hyp10', mode: 'live' });
    await expect(a.migrateVm({ vm: v1!.name, source: 'hyp10', target: 'hyp09', mode: 'live' })).rejects.toThrow(/failed at 60%/);
    expect((await a.findVm(v1!.name))?.host).toBe('hyp10');
    await a.migrateVm({ vm: v1!.name, source: 'hyp10', target: 'hyp09', mode: 'live' });
    expect(await rt.redis.hget(`${rt.prefix}:lab:faults`, `vm:${v1!.name}`)).toBeNull();
    // After switch-over, once: the VM is on the target and the call failed; the next is clean.
    await setLabFault(rt.redis, rt.prefix, `vm:${v2!.name}`, 'migrate-fail-after-once');
    await expect(a.migrateVm({ vm: v2!.name, source: 'hyp09', target: 'hyp10', mode: 'live' })).rejects.toThrow(/did not report completion/);
    expect((await a.findVm(v2!.name))?.host).toBe('hyp10');
    await a.migrateVm({ vm: v2!.name, source: 'hyp10', target: 'hyp09', mode: 'live' });
    // On a host, the n-th call of an operation: the 2nd describe of hyp11 fails, then it clears.
    await setLabFault(rt.redis, rt.prefix, 'hyp11', 'fail:describe@2');
    const b = rt.adapters.forHost('hyp11');
    await b.describeHost('hyp11');
    await expect(b.describeHost('hyp11')).rejects.toThrow(/describe failed/);
    await b.describeHost('hyp11');
    // Bad specs are refused when set, with nothing changed.
    await expect(setLabFault(rt.redis, rt.prefix, 'hyp11', 'migrate')).rejects.toThrow(/unknown lab fault "migrate"/);
    await expect(setLabFault(rt.redis, rt.prefix, 'hyp11', 'migrate-fail')).rejects.toThrow(/is a VM fault/);
    await b.describeHost('hyp11');
  });

  it('refuses to migrate into maintenance or across CPU vendors', async () => {
    const a = rt.adapters.forHost('hyp07');
    const vm = (await a.listVms('hyp07')).find((v) => v.power === 'running')!;
    await a.enterMaintenance('hyp08');
    await expect(a.migrateVm({ vm: vm.name, source: 'hyp07', target: 'hyp08', mode: 'live' })).rejects.toThrow(/maintenance/);
    await a.exitMaintenance('hyp08');
    await expect(a.migrateVm({ vm: vm.name, source: 'hyp07', target: 'hyp30', mode: 'live' })).rejects.toThrow(/not in lab cluster/);
  });

  it('removes a virtual port once; a second removal says it is gone', async () => {
    const a = rt.adapters.forHost('hyp01');
    let port;
    for (const h of rt.inventory.clusters['prod-a']!) {
      port = findStalePorts(await rt.adapters.forHost(h).npivInventory(h))[0];
      if (port) break;
    }
    expect(port).toBeDefined();
    await a.removeVirtualPort(port!);
    await expect(a.removeVirtualPort(port!)).rejects.toThrow(/has no virtual port/);
  });
});
