/** Host locks and the drain ledger against the real test Redis. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { silentLogger } from '../../src/log.js';
import { acquireLock, acquireLocks, lockedSentence, readLock, refreshLock, releaseLock } from '../../src/jobs/drain/locks.js';
import { isOpen, readLedger, setLedgerStatus, writeLedger, type Ledger } from '../../src/jobs/drain/ledger.js';
import { redisNow, releaseReservations, reservationsOf, reservedByOthers, reserveMoves, settleReservation } from '../../src/jobs/drain/reserve.js';
import { drainLabYaml } from '../support/drain-support.js';
import { eventually } from '../support/wait.js';

let rt: Runtime;
beforeAll(() => {
  rt = createRuntime({ loaded: parseConfig(drainLabYaml(), 'test', {}), redisUrl: inject('redisUrl'), log: silentLogger(), prefix: `t-locks-${process.pid}-${Date.now()}` });
});
afterAll(async () => rt.close());

describe('host locks', () => {
  it('admits one operation per host, re-entrant for the same job, and names the holder', async () => {
    expect(await acquireLock(rt, { host: 'hyp03', opId: 41, owner: 'alice', op: 'drain' })).toBeNull();
    expect(await acquireLock(rt, { host: 'hyp03', opId: 41, owner: 'alice', op: 'drain' })).toBeNull();
    const held = await acquireLock(rt, { host: 'hyp03', opId: 42, owner: 'bob', op: 'restore' });
    expect(held).not.toBeNull();
    expect(lockedSentence(held!)).toBe('hyp03 is being drained by @alice (job 41).');
    // Only the holder refreshes or releases.
    expect(await refreshLock(rt, 'hyp03', 42)).toBe(false);
    await releaseLock(rt, 'hyp03', 42);
    expect((await readLock(rt, 'hyp03'))?.opId).toBe(41);
    await releaseLock(rt, 'hyp03', 41);
    expect(await readLock(rt, 'hyp03')).toBeNull();
  });

  it('frees itself when the owner stops refreshing (a killed worker)', async () => {
    expect(await acquireLock(rt, { host: 'hyp04', opId: 7, owner: 'alice', op: 'drain' }, 150)).toBeNull();
    await eventually(async () => (await readLock(rt, 'hyp04')) === null, 'the unrefreshed lock to expire', 1000);
    expect(await acquireLock(rt, { host: 'hyp04', opId: 8, owner: 'bob', op: 'migrate' })).toBeNull();
  });

  it('locks several hosts all or nothing', async () => {
    await acquireLock(rt, { host: 'hyp06', opId: 9, owner: 'carol', op: 'drain' });
    const held = await acquireLocks(rt, ['hyp05', 'hyp06'], { opId: 10, owner: 'dave', op: 'migrate' });
    expect(held?.opId).toBe(9);
    expect(await readLock(rt, 'hyp05')).toBeNull();
  });
});

describe('ledger', () => {
  const ledger = (opId: number): Ledger => ({
    host: 'hyp02',
    cluster: 'prod-a',
    opId,
    requester: 'alice',
    createdAt: 1,
    status: 'draining',
    vms: [{ name: 'web01', id: 'id-1', home: 'hyp02', power: 'running', ha: true, memoryMiB: 2048, target: 'hyp03', action: 'live' }],
  });

  it('is written once per drain, kept while open, replaced only after restore', async () => {
    expect((await writeLedger(rt, ledger(1))).opId).toBe(1);
    // A resumed job writes again: the first snapshot stays.
    expect((await writeLedger(rt, { ...ledger(1), vms: [] })).vms).toHaveLength(1);
    // Another drain while it is open: refused (the open one is returned).
    expect((await writeLedger(rt, ledger(2))).opId).toBe(1);
    await setLedgerStatus(rt, 'hyp02', 'drained');
    expect(isOpen(await readLedger(rt, 'hyp02'))).toBe(true);
    await setLedgerStatus(rt, 'hyp02', 'restored', { restoredBy: 3 });
    expect(isOpen(await readLedger(rt, 'hyp02'))).toBe(false);
    expect((await writeLedger(rt, ledger(4))).opId).toBe(4);
  });
});

describe('memory reservations', () => {
  it('all or nothing against the others of that moment; a finished move counts for plans whose facts predate it; an ended operation frees the rest', async () => {
    const avail = { hyp03: 10_000, hyp04: 10_000 };
    const t0 = await redisNow(rt);
    expect(await reserveMoves(rt, 'c1', 1, [{ vmId: 'a', target: 'hyp03', memoryMiB: 6000 }, { vmId: 'b', target: 'hyp04', memoryMiB: 1000 }], avail, t0)).toBeNull();
    // A second plan read the same facts: hyp03 has 4,000 left for it, hyp04 9,000; nothing of it is kept when one target is short.
    expect(await reserveMoves(rt, 'c1', 2, [{ vmId: 'c', target: 'hyp04', memoryMiB: 2000 }, { vmId: 'd', target: 'hyp03', memoryMiB: 6000 }], avail, t0)).toEqual({ target: 'hyp03', reserved: 6000, want: 6000, available: 10_000 });
    expect(await reservationsOf(rt, 'c1', 2)).toEqual({});
    expect((await reservedByOthers(rt, 'c1', 2, t0)).hyp03?.mib).toBe(6000);
    // a moved: plans with older facts still count it; plans with facts read afterwards see the VM itself.
    await settleReservation(rt, 'c1', 1, 'a', true);
    expect((await reservedByOthers(rt, 'c1', 2, t0)).hyp03?.mib).toBe(6000);
    await eventually(async () => (await redisNow(rt)) > t0 + 2, 'Redis time to move on', 1000);
    expect((await reservedByOthers(rt, 'c1', 2, await redisNow(rt))).hyp03).toBeUndefined();
    // b failed: free again. The operation ended: nothing pending of it is left.
    await settleReservation(rt, 'c1', 1, 'b', false);
    expect((await reservedByOthers(rt, 'c1', 2, t0)).hyp04).toBeUndefined();
    expect(await reserveMoves(rt, 'c1', 1, [{ vmId: 'e', target: 'hyp04', memoryMiB: 500 }], avail, t0)).toBeNull();
    // Re-planning replaces the operation's entries (a's done entry included).
    expect(Object.keys(await reservationsOf(rt, 'c1', 1))).toEqual(['e']);
    expect(await releaseReservations(rt, 'c1', 1)).toBe(1);
    expect(await reservationsOf(rt, 'c1', 1)).toEqual({});
  });
});
