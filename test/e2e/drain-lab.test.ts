/**
 * Drain, restore and the decisions around them, end to end on the lab (real Redis, in-process
 * workers, console session). Small lab timings: 2 ms per call, 60 ms per migration.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { labKeys, setLabFault } from '../../src/adapters/lab/control.js';
import { readLedger } from '../../src/jobs/drain/ledger.js';
import { readLock } from '../../src/jobs/drain/locks.js';
import type { Operation } from '../../src/jobs/operations.js';
import { drainLabYaml, hostState, migrationsPerVm, setHostVms, vmName, whereIs } from '../support/drain-support.js';

const CLUSTER = ['hyp01', 'hyp02', 'hyp03', 'hyp04', 'hyp05', 'hyp06'];
let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function newest(h: Harness): Promise<Operation> {
  return h.waitFor(async () => (await h.deps.ops.recent(1))[0], 'an operation');
}

async function waitStage(h: Harness, id: number, stage: string, status = 'waiting'): Promise<Operation> {
  return h.waitFor(async () => {
    const op = await h.deps.ops.get(id);
    return op && op.params.stage === stage && op.status === status ? op : undefined;
  }, `job ${id} to reach ${stage}/${status}`);
}

/** Wait for an ephemeral (pub/sub delivery is asynchronous). */
async function said(h: Harness, what: string | RegExp, user?: string): Promise<void> {
  await h.waitFor(async () => {
    const all = h.ephemerals(user).join('\n');
    return typeof what === 'string' ? all.includes(what) : what.test(all);
  }, `an ephemeral saying ${String(what)}`, 5000);
}

async function planned(h: Harness, line: string): Promise<Operation> {
  await h.run(line);
  const op = await newest(h);
  return waitStage(h, op.id, 'awaiting-start');
}

describe('drain on the lab', () => {
  it('drains a 20-VM host, then restore brings every VM home', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    const names = await setHostVms(h.deps, 'hyp03', 20);
    const op = await planned(h, 'drain hyp03');
    // The card is redrawn over pub/sub: wait for it rather than race it.
    await h.waitFor(async () => h!.transcript().includes(`type: start ${op.id}`), 'the plan card with Start');
    await h.waitForText('hyp03 can be drained: 20 VMs move live');
    // The lock names the drain.
    await h.run('drain hyp03', 'bob');
    await said(h, `hyp03 is being drained by @alice (job ${op.id})`, 'bob');
    // Only the requester starts it (policy default: 0 approvals).
    await h.run(`start ${op.id}`, 'bob');
    await said(h, `Only @alice, who asked for job ${op.id}`, 'bob');
    await h.run(`start ${op.id}`);
    const done = await h.waitForOp(op.id, 30_000);
    expect(done.status).toBe('succeeded');
    const where = await whereIs(h.rt, CLUSTER);
    for (const n of names) expect(where.get(n)).not.toBe('hyp03');
    expect((await hostState(h.rt, 'hyp03')).facts.maintenance).toBe(true);
    const ledger = await readLedger(h.rt, 'hyp03');
    expect(ledger?.status).toBe('drained');
    expect(ledger?.vms.map((v) => v.name).sort()).toEqual([...names].sort());
    await h.waitForText(/hyp03 drained in .*: 20 moved, 0 skipped, 0 failed/);
    expect(await readLock(h.rt, 'hyp03')).toBeNull();
    // Spread: more than one target.
    expect(new Set(names.map((n) => where.get(n))).size).toBeGreaterThan(2);
    // Each VM moved once.
    const per = await migrationsPerVm(h.rt.redis, h.rt.prefix);
    for (const n of names) expect(per.get(n)).toBe(1);
    // And each migration is timed in /metrics, by adapter and outcome.
    expect(await h.rt.metrics.registry.getSingleMetricAsString('ferry_migration_duration_seconds')).toMatch(/^ferry_migration_duration_seconds_count\{adapter="lab",outcome="ok"\} 20$/m);

    // Draining it again: one sentence.
    await h.run('drain hyp03');
    const again = await h.waitForOp(undefined);
    expect(again.summary).toContain('hyp03 is already in maintenance');

    await h.run('restore hyp03');
    const restore = await newest(h);
    const r = await h.waitForOp(restore.id, 30_000);
    expect(r.status).toBe('succeeded');
    const back = await whereIs(h.rt, CLUSTER);
    for (const n of names) expect(back.get(n)).toBe('hyp03');
    expect((await hostState(h.rt, 'hyp03')).facts.maintenance).toBe(false);
    expect((await readLedger(h.rt, 'hyp03'))?.status).toBe('restored');
    await h.waitForText(/hyp03 restored in .*: 20 VMs back home/);
    // A second restore has nothing to read.
    await h.run('restore hyp03');
    await said(h, 'already restored');
  });

  it('rollback auto: one VM that cannot move puts every VM back and ends maintenance', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    const names = await setHostVms(h.deps, 'hyp03', 20);
    const bad = vmName('hyp03', 11);
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${bad}`, 'migrate-fail');
    const op = await planned(h, 'drain hyp03 rollback auto');
    await h.run(`start ${op.id}`);
    const done = await h.waitForOp(op.id, 30_000);
    expect(done.status).toBe('failed');
    const where = await whereIs(h.rt, CLUSTER);
    for (const n of names) expect(where.get(n)).toBe('hyp03');
    expect((await hostState(h.rt, 'hyp03')).facts.maintenance).toBe(false);
    await h.waitForText(`${bad} could not move to`);
    expect(h.transcript()).toContain('after 2 attempts'); // migrationRetries: 1
    await h.waitForText(/Rolled back job \d+: \d+ VMs? (is|are) back on hyp03 and hyp03 is out of maintenance/);
    expect((await readLedger(h.rt, 'hyp03'))?.status).toBe('rolled-back');
    expect(await readLock(h.rt, 'hyp03')).toBeNull();
  });

  it('rollback auto: a VM whose migration reported failure after it reached the target is moved back too', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    const names = await setHostVms(h.deps, 'hyp03', 4);
    const bad = vmName('hyp03', 2);
    // Every migration of it completes and then reports a failure (the way back too).
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${bad}`, 'migrate-fail-after');
    const op = await planned(h, 'drain hyp03 rollback auto');
    await h.run(`start ${op.id}`);
    const done = await h.waitForOp(op.id, 30_000);
    expect(done.status).toBe('failed');
    await h.waitForText(`${bad} could not move to`);
    const where = await whereIs(h.rt, CLUSTER);
    for (const n of names) expect(where.get(n)).toBe('hyp03');
    expect((await hostState(h.rt, 'hyp03')).facts.maintenance).toBe(false);
    await h.waitForText(/Rolled back job \d+: \d+ VMs? (is|are) back on hyp03 and hyp03 is out of maintenance\. Every VM is where it started/);
    expect((await readLedger(h.rt, 'hyp03'))?.status).toBe('rolled-back');
    expect(await readLock(h.rt, 'hyp03')).toBeNull();
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${bad}`, null);
  });

  it('restore with VMs a precheck now blocks from going home ends partial and names them', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    const names = await setHostVms(h.deps, 'hyp03', 4);
    const op = await planned(h, 'drain hyp03');
    await h.run(`start ${op.id}`);
    expect((await h.waitForOp(op.id, 30_000)).status).toBe('succeeded');
    // hyp03 shrank while drained: room for two of its four 2 GiB VMs.
    const st = await hostState(h.rt, 'hyp03');
    st.facts.memoryMiB = 5000;
    await h.rt.redis.set(labKeys(h.rt.prefix).host('hyp03'), JSON.stringify(st));
    await h.run('restore hyp03');
    const r = await h.waitForOp((await newest(h)).id, 30_000);
    expect(r.status).toBe('partial');
    const where = await whereIs(h.rt, CLUSTER);
    const away = names.filter((n) => where.get(n) !== 'hyp03');
    expect(away.length).toBe(2);
    const t = h.transcript();
    for (const n of away) expect(t).toMatch(new RegExp(`${n} cannot come home now: .*hyp03 has .* of memory free`));
    expect(t).toMatch(new RegExp(`2 VMs could not come home: ${away.join(', ')}`));
    expect(t).toMatch(new RegExp(`migrate ${away[0]} to hyp03`));
    // The ledger is closed: hyp03 is out of maintenance and can be drained again.
    expect((await readLedger(h.rt, 'hyp03'))?.status).toBe('restored');
    expect((await hostState(h.rt, 'hyp03')).facts.maintenance).toBe(false);
  });

  it('rollback hold: the thread offers Roll back / Retry / Skip, and each works', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    const names = await setHostVms(h.deps, 'hyp03', 20);
    const bad = vmName('hyp03', 5);
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${bad}`, 'migrate-fail');

    // Retry: clear the fault, retry, the drain completes.
    const op = await planned(h, 'drain hyp03 rollback hold');
    await h.run(`start ${op.id}`);
    await waitStage(h, op.id, 'held');
    // The hold's card reaches the thread over pub/sub after the stage is written: wait for it.
    await h.waitForText(`type: rollback ${op.id}`);
    await h.waitForText(`type: retry ${op.id}`);
    await h.waitForText(`type: skip ${op.id} ${bad}`);
    expect((await hostState(h.rt, 'hyp03')).facts.maintenance).toBe(true);
    // Skip needs a VM that failed.
    await h.run(`skip ${op.id} ${vmName('hyp03', 6)}`);
    await said(h, 'is not a failed VM');
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${bad}`, null);
    await h.run(`retry ${op.id}`);
    const done = await h.waitForOp(op.id, 30_000);
    expect(done.status).toBe('succeeded');
    const where = await whereIs(h.rt, CLUSTER);
    for (const n of names) expect(where.get(n)).not.toBe('hyp03');
    // A second decision on the same failure does nothing.
    await h.run(`retry ${op.id}`);
    await said(h, /already ended/);

    // Restore, then Skip: the failed VM stays, the rest move.
    await h.run('restore hyp03');
    await h.waitForOp((await newest(h)).id, 30_000);
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${bad}`, 'migrate-fail');
    const op2 = await planned(h, 'drain hyp03 rollback hold');
    await h.run(`start ${op2.id}`);
    await waitStage(h, op2.id, 'held');
    await h.run(`skip ${op2.id} ${bad}`);
    const done2 = await h.waitForOp(op2.id, 30_000);
    expect(done2.status).toBe('succeeded');
    const where2 = await whereIs(h.rt, CLUSTER);
    expect(where2.get(bad)).toBe('hyp03');
    expect(names.filter((n) => n !== bad).every((n) => where2.get(n) !== 'hyp03')).toBe(true);
    expect(done2.summary).toMatch(/19 moved, 1 skipped, 0 failed/);

    // Restore, then Roll back from the hold.
    await h.run('restore hyp03');
    await h.waitForOp((await newest(h)).id, 30_000);
    const op3 = await planned(h, 'drain hyp03 rollback hold');
    await h.run(`start ${op3.id}`);
    await waitStage(h, op3.id, 'held');
    await h.run(`rollback ${op3.id}`);
    const done3 = await h.waitForOp(op3.id, 30_000);
    expect(done3.status).toBe('failed');
    const where3 = await whereIs(h.rt, CLUSTER);
    for (const n of names) expect(where3.get(n)).toBe('hyp03');
    expect((await hostState(h.rt, 'hyp03')).facts.maintenance).toBe(false);
  });

  it('dry-run stops at the plan; cancel ends a waiting plan; bad input is one sentence', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    await setHostVms(h.deps, 'hyp03', 4);
    await h.run('drain hyp03 dry-run');
    const dry = await h.waitForOp(undefined);
    expect(dry.status).toBe('succeeded');
    await h.waitForText('dry run');
    expect((await hostState(h.rt, 'hyp03')).facts.maintenance).toBe(false);
    expect(await readLedger(h.rt, 'hyp03')).toBeNull();

    const op = await planned(h, 'drain hyp03');
    await h.run(`cancel ${op.id}`);
    const c = await h.waitForOp(op.id);
    expect(c.status).toBe('cancelled');
    await h.waitForText('Nothing was moved');
    expect(await readLock(h.rt, 'hyp03')).toBeNull();

    await h.run('drain hyp33');
    await said(h, 'hyp33 is not in the inventory; did you mean hyp03?');
    await h.run('restore hyp04');
    await said(h, 'hyp04 has no drain ledger to restore');
  });

  it('a running non-HA VM refuses the drain; save-non-ha is an override that needs an approver (an approval request)', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    const names = await setHostVms(h.deps, 'hyp03', 3);
    const st = await hostState(h.rt, 'hyp03');
    st.vms[0]!.ha = false;
    await h.rt.redis.set(`${h.rt.prefix}:lab:host:hyp03`, JSON.stringify(st));
    await h.run('drain hyp03');
    const refused = await h.waitForOp(undefined);
    expect(refused.status).toBe('failed');
    await h.waitForText(`${names[0]} is running and not highly available`);
    expect((await hostState(h.rt, 'hyp03')).facts.maintenance).toBe(false);

    const op = await planned(h, 'drain hyp03 save-non-ha');
    // The override is a request in the approvals store, bound to the drain plan.
    const id = op.params.approvalId as string;
    expect(id).toMatch(/^\d+$/);
    await h.waitFor(async () => h!.transcript().includes(`drain hyp03 save-non-ha (job ${op.id}), overriding a refused precheck`), 'the approval card');
    await h.waitForText(`type: approve ${id}`);
    // The requester's own Start or approve is a refused self-approval; a non-approver is refused.
    await h.run(`start ${op.id}`);
    await said(h, 'You asked for this; someone else has to approve it.');
    await h.run(`approve ${id}`, 'dave');
    await said(h, 'Only the approvers group may approve or reject this request.', 'dave');
    expect((await h.deps.ops.get(op.id))!.status).toBe('waiting');
    await h.run(`approve ${id}`, 'bob');
    const done = await h.waitForOp(op.id, 30_000);
    expect(done.status).toBe('succeeded');
    const where = await whereIs(h.rt, CLUSTER);
    expect(where.get(names[0]!)).toBe('hyp03');
    // Saved for real, and checked: the lab shows it in saved state on hyp03.
    const after = await hostState(h.rt, 'hyp03');
    expect(after.vms.find((v) => v.name === names[0])?.power).toBe('saved');
    expect(done.summary).toBe('2 moved, 1 saved, 0 skipped, 0 failed');
    await h.waitFor(async () => /hyp03 drained in .*: 2 moved, 1 saved, 0 skipped, 0 failed/.test(h!.transcript()), 'the summary');

    // A VM that was already saved before the drain is not Ferry's to resume.
    const st2 = await hostState(h.rt, 'hyp03');
    st2.vms.push({ ...st2.vms[0]!, name: 'was-saved', id: '00000000-0000-4000-8000-0000000000ff', power: 'saved', ha: true });
    await h.rt.redis.set(`${h.rt.prefix}:lab:host:hyp03`, JSON.stringify(st2));
    await h.run('restore hyp03');
    const r = await h.waitForOp((await h.deps.ops.recent(1))[0]!.id, 30_000);
    expect(r.status, h.transcript()).toBe('succeeded');
    const home = await hostState(h.rt, 'hyp03');
    expect(home.vms.find((v) => v.name === names[0])?.power).toBe('running');
    expect(home.vms.find((v) => v.name === 'was-saved')?.power).toBe('saved');
    expect(r.summary).toMatch(/1 resumed/);
  });

  it('refuses the last healthy host of a cluster', async () => {
    h = await makeHarness({ yaml: drainLabYaml({ hosts: 'hyp[01-02]' }) });
    await setHostVms(h.deps, 'hyp01', 2);
    const adapter = h.rt.adapters.forHost('hyp02');
    await adapter.enterMaintenance('hyp02');
    await h.run('drain hyp01');
    const op = await h.waitForOp(undefined);
    expect(op.status).toBe('failed');
    expect(op.summary).toContain('hyp01 is the last healthy host of prod-a');
    expect((await hostState(h.rt, 'hyp01')).facts.maintenance).toBe(false);
  });
});
