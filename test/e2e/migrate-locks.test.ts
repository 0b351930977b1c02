/**
 * migrate's and restore's host locks while they run, on the lab over real Redis: a lock that expired (Redis away
 * longer than its TTL) is taken back by the keeper; one another operation took stops the migrate
 * before its next attempt, and a host held by another operation at Start stops it before moving.
 * The lock TTL is shortened (keepers tick every second) so a keeper's tick falls inside a move.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';

vi.hoisted(() => {
  process.env.FERRY_LOCK_TTL_MS = '2000';
});

import { makeHarness, type Harness } from '../support/harness.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import { acquireLock, readLock } from '../../src/jobs/drain/locks.js';
import { readLedger } from '../../src/jobs/drain/ledger.js';
import { queryAudit } from '../../src/audit/audit.js';
import { drainLabYaml, hostState, migrationsPerVm, setHostVms, vmName } from '../support/drain-support.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function moving(h: Harness, vm: string): Promise<void> {
  await h.waitFor(async () => (await queryAudit(h.rt, vm)).some((a) => a.action === 'migrateVm' && a.outcome === 'started'), `the migration of ${vm} to start`);
}

describe('migrate and its host locks', () => {
  it('a lock that expired mid-move is taken back by the keeper while the VM moves, and released at the end', async () => {
    h = await makeHarness({ yaml: drainLabYaml({ migrationMs: 4000 }) });
    await setHostVms(h.deps, 'hyp03', 2);
    const vm = vmName('hyp03', 1);
    const op = await h.planned(`migrate ${vm} to hyp04`);
    await h.run(`start ${op.id}`);
    await moving(h, vm);
    await h.rt.redis.del(h.rt.key('lock', 'host', 'hyp03'), h.rt.key('lock', 'host', 'hyp04'));
    await h.waitFor(async () => (await readLock(h!.rt, 'hyp03'))?.opId === op.id && (await readLock(h!.rt, 'hyp04'))?.opId === op.id, 'the keeper to take both locks back');
    // Taken back while the move still ran: nobody else could have the hosts meanwhile.
    expect((await h.deps.ops.get(op.id))?.status).toBe('running');
    expect(await acquireLock(h.rt, { host: 'hyp03', opId: 9999, owner: 'bob', op: 'drain' })).toMatchObject({ opId: op.id });
    const done = await h.waitForOp(op.id);
    expect(done.status, h.transcript()).toBe('succeeded');
    expect(await readLock(h.rt, 'hyp03')).toBeNull();
    expect(await readLock(h.rt, 'hyp04')).toBeNull();
  });

  it('another operation took the source while an attempt failed: no retry starts, the VM stays and the thread says why', async () => {
    h = await makeHarness({ yaml: drainLabYaml({ migrationMs: 2000, retries: 2 }) });
    await setHostVms(h.deps, 'hyp03', 2);
    const vm = vmName('hyp03', 1);
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${vm}`, 'migrate-fail-once');
    const op = await h.planned(`migrate ${vm} to hyp04`);
    await h.run(`start ${op.id}`);
    await moving(h, vm);
    // The lock expired (Redis away) and a drain took the host before the keeper could.
    await h.rt.redis.del(h.rt.key('lock', 'host', 'hyp03'));
    expect(await acquireLock(h.rt, { host: 'hyp03', opId: 9999, owner: 'bob', op: 'drain' }, 60_000)).toBeNull();
    const done = await h.waitForOp(op.id);
    expect(done.status, h.transcript()).toBe('failed');
    await h.waitForText(`job ${op.id} lost its lock: hyp03 is being drained by @bob (job 9999). It stops here; ${vm} stays on hyp03 after 1 attempt.`);
    expect((await hostState(h.rt, 'hyp03')).vms.some((v) => v.name === vm)).toBe(true);
    expect((await migrationsPerVm(h.rt.redis, h.rt.prefix)).get(vm) ?? 0).toBe(0);
    expect(h.transcript()).not.toContain(`Retrying ${vm}`);
    // The other operation's lock is left as it was; this job's lock on the target is released.
    expect((await readLock(h.rt, 'hyp03'))?.opId).toBe(9999);
    expect(await readLock(h.rt, 'hyp04')).toBeNull();
  });

  it('a host another operation holds at Start: the migrate stops before moving', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    await setHostVms(h.deps, 'hyp03', 2);
    const vm = vmName('hyp03', 1);
    const op = await h.planned(`migrate ${vm} to hyp04`);
    // The plan's lock on the target lapsed while it waited, and a restore took the host.
    await h.rt.redis.del(h.rt.key('lock', 'host', 'hyp04'));
    expect(await acquireLock(h.rt, { host: 'hyp04', opId: 9998, owner: 'carol', op: 'restore' }, 60_000)).toBeNull();
    await h.run(`start ${op.id}`);
    const done = await h.waitForOp(op.id);
    expect(done.status).toBe('failed');
    await h.waitForText(`hyp04 is being restored by @carol (job 9998). job ${op.id} stops here; nothing was changed.`);
    expect((await hostState(h.rt, 'hyp03')).vms.some((v) => v.name === vm)).toBe(true);
    expect((await readLock(h.rt, 'hyp04'))?.opId).toBe(9998);
    expect(await readLock(h.rt, 'hyp03')).toBeNull();
  });
});

describe('restore and its host lock', () => {
  async function drained(h: Harness, host: string): Promise<string[]> {
    const names = await setHostVms(h.deps, host, 1);
    const op = await h.planned(`drain ${host}`);
    await h.run(`start ${op.id}`);
    expect((await h.waitForOp(op.id)).status).toBe('succeeded');
    return names;
  }

  async function restoreOf(h: Harness, host: string): Promise<number> {
    await h.run(`restore ${host}`);
    const op = (await h.deps.ops.recent(1))[0]!;
    expect(op.kind).toBe('restore');
    return op.id;
  }

  it('a lock that expired while a VM comes home is taken back by the keeper', async () => {
    h = await makeHarness({ yaml: drainLabYaml({ migrationMs: 4000 }) });
    const [vm] = await drained(h, 'hyp03');
    const id = await restoreOf(h, 'hyp03');
    await h.waitFor(async () => (await queryAudit(h!.rt, vm!)).filter((a) => a.action === 'migrateVm' && a.outcome === 'started').length === 2, `${vm} to start home`);
    await h.rt.redis.del(h.rt.key('lock', 'host', 'hyp03'));
    await h.waitFor(async () => (await readLock(h!.rt, 'hyp03'))?.opId === id, 'the restore to take its lock back');
    expect((await h.deps.ops.get(id))?.status).toBe('running');
    const done = await h.waitForOp(id);
    expect(done.status, h.transcript()).toBe('succeeded');
    expect(await readLock(h.rt, 'hyp03')).toBeNull();
  });

  it('another operation took the host while an attempt failed: no retry starts, the VM stays, the ledger stays open', async () => {
    h = await makeHarness({ yaml: drainLabYaml({ migrationMs: 2000, retries: 2 }) });
    const [vm] = await drained(h, 'hyp03');
    const away = (await whereIsAll(h)).get(vm!)!;
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${vm}`, 'migrate-fail-once');
    const id = await restoreOf(h, 'hyp03');
    await h.waitFor(async () => (await queryAudit(h!.rt, vm!)).filter((a) => a.action === 'migrateVm' && a.outcome === 'started').length === 2, `${vm} to start home`);
    await h.rt.redis.del(h.rt.key('lock', 'host', 'hyp03'));
    expect(await acquireLock(h.rt, { host: 'hyp03', opId: 9999, owner: 'bob', op: 'drain' }, 60_000)).toBeNull();
    const done = await h.waitForOp(id);
    expect(done.status, h.transcript()).toBe('failed');
    await h.waitForText(`job ${id} lost its lock on hyp03: hyp03 is being drained by @bob (job 9999). It stopped after its current migration; 0 of 1 VMs are home.`);
    expect((await whereIsAll(h)).get(vm!)).toBe(away);
    expect(h.transcript()).not.toContain(`Retrying ${vm}`);
    expect((await readLock(h.rt, 'hyp03'))?.opId).toBe(9999);
    expect((await readLedger(h.rt, 'hyp03'))?.status).toBe('drained');
  });
});

async function whereIsAll(h: Harness): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const host of ['hyp01', 'hyp02', 'hyp03', 'hyp04', 'hyp05', 'hyp06']) for (const v of (await hostState(h.rt, host)).vms) out.set(v.name, host);
  return out;
}
