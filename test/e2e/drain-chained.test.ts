/**
 * Drains that overlap in one cluster (maxInMaintenance 2), end to end on the lab (real Redis,
 * in-process workers): a VM that came to a host from another host's open drain keeps its real
 * home in the second ledger.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { readLedger } from '../../src/jobs/drain/ledger.js';
import { drainLabYaml, setHostVms, whereIs } from '../support/drain-support.js';

const CLUSTER = ['hyp01', 'hyp02', 'hyp03', 'hyp04', 'hyp05', 'hyp06'];
let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function restore(h: Harness, host: string) {
  await h.run(`restore ${host}`);
  const op = (await h.deps.ops.recent(1))[0]!;
  expect(op.title).toContain(`restore ${host}`);
  return h.waitForOp(op.id);
}

describe('a VM that came from another host\'s open drain', () => {
  it('keeps its original home: restore of the host it passed through leaves it alone and says where it belongs; restore of its home brings it back', async () => {
    h = await makeHarness({ yaml: drainLabYaml({ maxInMaintenance: 2 }) });
    for (const host of CLUSTER) await setHostVms(h.deps, host, 1, { memoryMiB: 1024 });
    const [a] = await setHostVms(h.deps, 'hyp01', 1, { memoryMiB: 1024 });
    const first = await h.planned('drain hyp01');
    await h.run(`start ${first.id}`);
    expect((await h.waitForOp(first.id)).status).toBe('succeeded');
    const via = (await whereIs(h.rt, CLUSTER)).get(a!)!;
    expect(via).not.toBe('hyp01');

    // Drain the host it went to: it moves on, and its home stays hyp01.
    const second = await h.planned(`drain ${via}`);
    await h.waitForText(`${a} belongs to hyp01 (moved here by drain job ${first.id}, not restored yet)`);
    await h.run(`start ${second.id}`);
    expect((await h.waitForOp(second.id)).status).toBe('succeeded');
    const ledger = await readLedger(h.rt, via);
    expect(ledger?.vms.find((v) => v.name === a)).toMatchObject({ home: 'hyp01', homeOpId: first.id });
    const parked = (await whereIs(h.rt, CLUSTER)).get(a!)!;
    expect([via, 'hyp01']).not.toContain(parked);

    // Restore of the host it passed through: its own VM comes home, hyp01's stays and is named.
    const r1 = await restore(h, via);
    expect(r1.status, h.transcript()).toBe('succeeded');
    expect((await whereIs(h.rt, CLUSTER)).get(a!)).toBe(parked);
    await h.waitForText(`${a} belongs to hyp01, not here (drain job ${first.id} moved it off hyp01); it stays on ${parked}, and restore hyp01 brings it home.`);
    await h.waitForText(new RegExp(`${via} restored in .*: 1 VM back home, 0 already there, 1 left to its own home host`));

    // Restore of its home brings it back.
    const r2 = await restore(h, 'hyp01');
    expect(r2.status, h.transcript()).toBe('succeeded');
    expect((await whereIs(h.rt, CLUSTER)).get(a!)).toBe('hyp01');
  });
});
