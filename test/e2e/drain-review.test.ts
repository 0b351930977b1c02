/**
 * Review findings on the drain workflow, end to end on the lab (real Redis, in-process workers).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { readLedger } from '../../src/jobs/drain/ledger.js';
import { acquireLock, LOCK_TTL_MS, readLock } from '../../src/jobs/drain/locks.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import type { Operation } from '../../src/jobs/operations.js';
import { drainLabYaml, hostState, migrationsPerVm, setHostVms, vmName } from '../support/drain-support.js';

let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

const planned = (h: Harness, line: string): Promise<Operation> => h.planned(line);

describe('drain review', () => {
  it('two drains planned side by side in one cluster: the second Start is refused (maxInMaintenance 1), never two hosts in maintenance', async () => {
    h = await makeHarness({ yaml: drainLabYaml({ migrationMs: 200 }) });
    const a = await setHostVms(h.deps, 'hyp01', 4);
    const b = await setHostVms(h.deps, 'hyp02', 4);
    // Both plans are made while no host is in maintenance: both pass the precheck.
    const opA = await planned(h, 'drain hyp01');
    const opB = await planned(h, 'drain hyp02');
    await h.run(`start ${opA.id}`);
    await h.waitFor(async () => (await hostState(h!.rt, 'hyp01')).facts.maintenance, 'hyp01 in maintenance');
    await h.run(`start ${opB.id}`);
    const doneB = await h.waitForOp(opB.id, 30_000);
    const doneA = await h.waitForOp(opA.id, 30_000);
    const t = h.transcript();
    expect(doneA.status, t).toBe('succeeded');
    expect(doneB.status, t).toBe('failed');
    expect(t).toMatch(/already in maintenance \(hyp01; limit 1\)/);
    expect((await hostState(h.rt, 'hyp02')).facts.maintenance).toBe(false);
    const per = await migrationsPerVm(h.rt.redis, h.rt.prefix);
    for (const n of b) expect(per.get(n) ?? 0).toBe(0);
    for (const n of a) expect(per.get(n)).toBe(1);
    // The refused drain leaves no open ledger behind.
    const lb = await readLedger(h.rt, 'hyp02');
    expect(lb === null || !['draining', 'drained', 'restoring'].includes(lb.status)).toBe(true);
  });
});

describe('drain review: a held drain keeps its host', () => {
  it('the running step\'s lock keeper does not shorten the hold lock back to a minute while the hold is posted', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    await setHostVms(h.deps, 'hyp03', 4);
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${vmName('hyp03', 2)}`, 'migrate-fail');
    const op = await planned(h, 'drain hyp03 rollback hold');
    // Slack can be slow (rate limits): the hold's own message takes longer than a keeper tick.
    const outbox = h.deps.outbox;
    const post = outbox.post.bind(outbox);
    outbox.post = async (conv, msg) => {
      if (msg.text.includes('is on hold')) await new Promise((r) => setTimeout(r, LOCK_TTL_MS / 4 + 1500));
      return post(conv, msg);
    };
    await h.run(`start ${op.id}`);
    await h.waitFor(async () => {
      const o = await h!.deps.ops.get(op.id);
      return o?.params.stage === 'held' && o.status === 'waiting' && h!.transcript().includes('is on hold') ? o : undefined;
    }, 'the hold', 40_000);
    // Held for days, not a minute: nobody else may drain or restore the half-drained host meanwhile.
    expect(await h.rt.redis.pttl(h.rt.key('lock', 'host', 'hyp03'))).toBeGreaterThan(86_400_000);
    expect((await readLock(h.rt, 'hyp03'))?.opId).toBe(op.id);
  });
  it('a host lock that expired mid-drain (a Redis outage over a minute) is taken back by the drain', async () => {
    h = await makeHarness({ yaml: drainLabYaml({ migrationMs: 300 }) });
    await setHostVms(h.deps, 'hyp03', 4);
    const op = await planned(h, 'drain hyp03 parallel 1');
    await h.run(`start ${op.id}`);
    await h.waitFor(async () => Object.keys(await h!.rt.redis.hgetall(h!.rt.key('op', op.id, 'vms'))).length > 0, 'the first migration');
    await h.rt.redis.del(h.rt.key('lock', 'host', 'hyp03'));
    await h.waitFor(async () => (await readLock(h!.rt, 'hyp03'))?.opId === op.id, 'the drain to take its lock back', 10_000);
    const done = await h.waitForOp(op.id, 30_000);
    expect(done.status).toBe('succeeded');
    expect(await readLock(h.rt, 'hyp03')).toBeNull();
  });

  it('a host lock another operation took while it was expired: the drain stops after its current migration and says so', async () => {
    // 2 s a migration: the lock is taken over during the first of four, and on a loaded machine the
    // test's poll can be seconds late; at 300 ms all four could finish before the takeover.
    h = await makeHarness({ yaml: drainLabYaml({ migrationMs: 2000 }) });
    await setHostVms(h.deps, 'hyp03', 4);
    const op = await planned(h, 'drain hyp03 parallel 1');
    await h.run(`start ${op.id}`);
    await h.waitFor(async () => Object.keys(await h!.rt.redis.hgetall(h!.rt.key('op', op.id, 'vms'))).length > 0, 'the first migration');
    await h.rt.redis.del(h.rt.key('lock', 'host', 'hyp03'));
    expect(await acquireLock(h.rt, { host: 'hyp03', opId: 9999, owner: 'bob', op: 'restore' })).toBeNull();
    const done = await h.waitForOp(op.id, 30_000);
    expect(done.status).toBe('failed');
    const moved = [...(await migrationsPerVm(h.rt.redis, h.rt.prefix)).values()].reduce((a, b) => a + b, 0);
    expect(moved).toBeLessThan(4);
    await h.waitForText(new RegExp(`job ${op.id} lost its lock on hyp03: hyp03 is being restored by @bob \\(job 9999\\)\\. It stopped after its current migration: ${moved} of 4 VMs moved`));
    expect((await readLock(h.rt, 'hyp03'))?.opId).toBe(9999);
    expect((await readLedger(h.rt, 'hyp03'))?.status).toBe('drained');
  });
});
