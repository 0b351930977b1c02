/**
 * migrate / precheck on the lab: plan and Start, datastore moves after the free-space check
 * (seed 003), NPIV vHBA pairs (seed 002) with rollback on failure, lingering ports (seed 000)
 * reported with the removal button, and the bad-input sentences.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import { labKeys } from '../../src/adapters/lab/control.js';
import { readLock } from '../../src/jobs/drain/locks.js';
import { queryAudit } from '../../src/audit/audit.js';
import type { Operation } from '../../src/jobs/operations.js';
import { drainLabYaml, hostState, setHostVms, vmName } from '../support/drain-support.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function newest(h: Harness): Promise<Operation> {
  return h.waitFor(async () => (await h.deps.ops.recent(1))[0], 'an operation');
}

async function migrate(h: Harness, line: string, start = true): Promise<Operation> {
  await h.run(line);
  const op = await newest(h);
  if (!start) return h.waitForOp(op.id, 40_000);
  await h.waitFor(async () => (await h.deps.ops.get(op.id))?.params.stage === 'awaiting-start', 'the plan', 40_000);
  await h.run(`start ${op.id}`);
  return h.waitForOp(op.id, 40_000);
}

describe('migrate on the lab', () => {
  it('moves one VM after Start, and with a datastore moves its storage too', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    await setHostVms(h.deps, 'hyp03', 3);
    const vm = vmName('hyp03', 1);
    await h.run(`precheck ${vm} to hyp04`);
    const pre = await h.waitForOp((await newest(h)).id, 40_000);
    expect(pre.status).toBe('succeeded');
    await h.waitForText(`${vm} can move live from hyp03 to hyp04.`);

    const dry = await migrate(h, `migrate ${vm} to hyp04 dry-run`, false);
    expect(dry.status).toBe('succeeded');
    expect((await hostState(h.rt, 'hyp03')).vms.some((v) => v.name === vm)).toBe(true);

    const op = await migrate(h, `migrate ${vm} to hyp04`);
    expect(op.status).toBe('succeeded');
    expect((await hostState(h.rt, 'hyp04')).vms.some((v) => v.name === vm)).toBe(true);
    expect(await readLock(h.rt, 'hyp03')).toBeNull();
    expect(await readLock(h.rt, 'hyp04')).toBeNull();
    const audits = await queryAudit(h.rt, vm);
    expect(audits.some((a) => a.kind === 'adapter' && a.action === 'migrateVm' && a.outcome === 'ok')).toBe(true);

    const vm2 = vmName('hyp03', 2);
    const op2 = await migrate(h, `migrate ${vm2} to hyp05 datastore local-hyp05`);
    expect(op2.status).toBe('succeeded');
    const moved = (await hostState(h.rt, 'hyp05')).vms.find((v) => v.name === vm2)!;
    expect(moved.disks.every((d) => d.datastore === 'local-hyp05')).toBe(true);
    await h.waitForText(`${vm2} moved live from hyp03 to hyp05 with its storage on local-hyp05`);
  });

  it('refuses a datastore without room (seed 003 free-space check), the same host, and another cluster without shared storage', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    await setHostVms(h.deps, 'hyp03', 2);
    // A 700 GiB disk does not fit on a 600 GiB-free local datastore.
    const key = labKeys(h.rt.prefix).host('hyp03');
    const st = await hostState(h.rt, 'hyp03');
    st.vms[0]!.disks[0]!.sizeGiB = 700;
    await h.rt.redis.set(key, JSON.stringify(st));
    const vm = vmName('hyp03', 1);
    const big = await migrate(h, `migrate ${vm} to hyp04 datastore local-hyp04`, false);
    expect(big.status).toBe('failed');
    await h.waitForText(/datastore local-hyp04 has 600 GiB free and .*need 700 GiB/);

    const same = await migrate(h, `migrate ${vm} to hyp03`, false);
    expect(same.summary).toContain(`${vm} is already on hyp03`);
    const other = await migrate(h, `migrate ${vm} to hyp07`, false);
    expect(other.summary).toContain('hyp07 is in cluster prod-b, not prod-a');
    expect((await hostState(h.rt, 'hyp03')).vms.some((v) => v.name === vm)).toBe(true);
    await h.run(`migrate ${vm} to hyp99`);
    await h.waitFor(async () => h!.ephemerals().join('\n').includes('hyp99 is not in the inventory'), 'the refusal');
  });

  it('NPIV: the target gets the secondary vHBA, the source loses its primary; a failure undoes the target side', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    await setHostVms(h.deps, 'hyp03', 2, { npiv: [1] });
    const vm = vmName('hyp03', 1);
    const facts = (await hostState(h.rt, 'hyp03')).vms[0]!;
    const primaries = facts.vfc.map((a) => a.wwpns[0]!);
    const secondaries = facts.vfc.map((a) => a.wwpns[1]!);

    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${vm}`, 'migrate-fail');
    const failed = await migrate(h, `migrate ${vm} to hyp04`);
    expect(failed.status).toBe('failed');
    expect((await hostState(h.rt, 'hyp04')).vports.filter((p) => secondaries.includes(p.wwpn))).toEqual([]);
    expect((await hostState(h.rt, 'hyp03')).vports.map((p) => p.wwpn)).toEqual(expect.arrayContaining(primaries));
    expect((await hostState(h.rt, 'hyp03')).vms.some((v) => v.name === vm)).toBe(true);

    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${vm}`, null);
    const ok = await migrate(h, `migrate ${vm} to hyp04`);
    expect(ok.status).toBe('succeeded');
    const dst = await hostState(h.rt, 'hyp04');
    expect(dst.vms.find((v) => v.name === vm)!.vfc.map((a) => a.wwpns)).toEqual(facts.vfc.map((a) => a.wwpns)); // WWPN set kept
    expect(dst.vports.map((p) => p.wwpn)).toEqual(expect.arrayContaining(secondaries));
    expect((await hostState(h.rt, 'hyp03')).vports.filter((p) => primaries.includes(p.wwpn))).toEqual([]);
    expect(h.transcript()).not.toContain('left 2 virtual Fibre Channel ports behind');
  });

  it('reports ports a migration left behind on the source, with the removal button', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    await setHostVms(h.deps, 'hyp03', 2, { npiv: [2] });
    const vm = vmName('hyp03', 2);
    const primaries = (await hostState(h.rt, 'hyp03')).vms[1]!.vfc.map((a) => a.wwpns[0]!);
    await setLabFault(h.rt.redis, h.rt.prefix, 'hyp03', 'linger');
    const op = await migrate(h, `migrate ${vm} to hyp04`);
    expect(op.status).toBe('succeeded');
    await h.waitFor(async () => h!.transcript().includes(`${vm} left 2 virtual Fibre Channel ports behind on hyp03`), 'the lingering report');
    const t = h.transcript();
    expect(t).toContain(`remove stale ports hyp03 ${primaries.join(' ')}`);
    // The button's value is a one-host sweep the removal flow accepts.
    const sweep = (await h.deps.ops.recent(5)).find((o) => o.kind === 'find-stale-ports');
    expect(sweep?.status).toBe('succeeded');
    expect(Object.keys(await h.deps.ops.results(sweep!.id))).toEqual(['hyp03']);
    expect(t).toContain(`Remove 2 lingering ports…]  → type: remove stale ports hyp03`);
  });
});
