/**
 * find stale ports end to end through a real Redis and BullMQ: the command in one process,
 * the sweep in a separate worker process (the Procfile's `worker`), results compared with
 * what the lab really holds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { fastLabYaml, makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { startFerry, writeConfig, type FerryProcess } from '../support/processes.js';
import { findStalePorts } from '../../src/core/stale-ports.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import type { HostSweepResult } from '../../src/jobs/workflows/find-stale-ports.js';

describe('sweep with the worker in a separate process', () => {
  let h: Harness;
  let worker: FerryProcess;
  const prefix = uniquePrefix('sweep');

  beforeAll(async () => {
    const yaml = fastLabYaml();
    worker = startFerry('worker', { REDIS_URL: inject('redisUrl'), FERRY_PREFIX: prefix, FERRY_CONFIG: writeConfig(yaml) });
    await worker.waitForLine(/workers ready/);
    h = await makeHarness({ yaml, prefix, workers: false });
  });

  afterAll(async () => {
    await h?.close();
    expect(await worker.stop()).toBe(0);
  });

  it('reports exactly the stale ports the lab holds, by host, in hex, with fabric', async () => {
    await h.run('find stale ports hyp01..hyp12');
    const op = await h.waitForOp();
    expect(op.status).toBe('succeeded');
    expect(op.hosts).toHaveLength(12);

    const expected: string[] = [];
    for (const host of op.hosts) {
      for (const p of findStalePorts(await h.rt.adapters.forHost(host).npivInventory(host))) expected.push(`${p.host} ${p.wwpn} ${p.fabric}`);
    }
    expect(expected.length).toBeGreaterThan(0);
    // The outcome is recorded before the summary is posted and the card brought to its end:
    // wait for the final card (the last of them), then read.
    const text = await h.waitForText(/12\/12 hosts · \d+ stale ports?\n/);
    expect(text).toContain('@alice find stale ports hyp01..hyp12 → 12 hosts: hyp01…hyp12');
    for (const line of expected) {
      const [host, wwpn, fabric] = line.split(' ');
      expect(text).toMatch(new RegExp(`${host}\\s+${wwpn}\\s+${fabric}`));
      expect(wwpn).toMatch(/^[0-9A-F]{16}$/);
    }
    expect(text).toContain(`${expected.length} stale port`);
    // The card was updated to its final state.
    expect(text).toMatch(/12\/12 hosts · \d+ stale ports?\n/);
    // The worker process did the work (its log has the host jobs).
    expect(worker.output()).toMatch(/"job":"sweep-host"/);
  });

  it('the final card counts what the results hold: a count lost after its host\'s result was kept (a failover between the two) is not left short', async () => {
    // hyp01's result is there and its count is not, as a failover between the two writes leaves
    // them: the retried batch skips hyp01 (its result is there), so only a recount finds it.
    const next = Number((await h.rt.redis.get(h.rt.key('op', 'seq'))) ?? 0) + 1;
    await h.rt.redis.hset(h.deps.ops.keyOf(next, 'results'), 'hyp01', JSON.stringify({ ok: true, stale: [], virtualPorts: 0 } satisfies HostSweepResult));
    await h.run('find stale ports hyp01..hyp04');
    const op = await h.waitForOp();
    expect(op.id).toBe(next);
    const results = await h.deps.ops.results<HostSweepResult>(op.id);
    const stale = Object.values(results).reduce((n, r) => n + (r.ok ? r.stale.length : 0), 0);
    await h.waitFor(async () => new RegExp(`4/4 hosts · ${stale} stale ports?\n`).test(h.transcript()), 'the final card with every host counted');
    expect(await h.deps.ops.counters(op.id)).toMatchObject({ done: 4, stale });
  });

  it('an unreachable host is listed with its error and does not hide the others', async () => {
    await setLabFault(h.rt.redis, prefix, 'hyp05', 'unreachable');
    await h.run('find stale ports hyp01..hyp08');
    const op = await h.waitForOp();
    await setLabFault(h.rt.redis, prefix, 'hyp05', null);
    expect(op.status).toBe('partial');
    const results = await h.deps.ops.results<HostSweepResult>(op.id);
    expect(Object.keys(results)).toHaveLength(8);
    expect(results.hyp05).toEqual({ ok: false, error: 'hyp05 did not answer (connection timed out)' });
    expect(Object.values(results).filter((r) => r.ok)).toHaveLength(7);
    // The outcome is recorded before the summary is posted: wait for the summary.
    await h.waitFor(async () => /Could not be swept[\s\S]*hyp05\s+hyp05 did not answer/.test(h.transcript()), 'the summary listing hyp05');
  });

  it('bad input: one sentence, nothing enqueued', async () => {
    const before = await h.deps.queues.hosts.getJobCounts('waiting', 'active', 'completed', 'waiting-children');
    const opsBefore = (await h.deps.ops.recent(100)).length;
    for (const bad of ['find stale ports hyp99..hyp01', 'find stale ports hyp01..esx09', 'find stale ports hyp1..hyp100000', 'find stale ports hyp98..hyp120', 'find stale ports hyp03; rm -rf /', 'fnid stale ports hyp01']) {
      await h.run(bad);
    }
    // Each refusal was published before h.run returned: the barrier brings them all in.
    await h.sync();
    const refusals = h.ephemerals('alice');
    expect(refusals.slice(-6)).toEqual([
      'The range hyp99..hyp01 runs backwards; did you mean hyp01..hyp99?',
      'The range hyp01..esx09 mixes the prefixes "hyp" and "esx"; a range stays within one prefix, e.g. hyp01..hyp09.',
      'The range hyp1..hyp100000 names 100000 hosts, over the limit of 500; split it into smaller ranges.',
      '21 names are not in the inventory: hyp100…hyp120. Nothing was started.',
      'Ferry does not take shell characters: ";" in "hyp03;". Give host names, ranges or lists, e.g. hyp01..hyp12.',
      'I don\'t know "fnid stale ports"; did you mean "find stale ports"? Try "help" for the list.',
    ]);
    expect((await h.deps.ops.recent(100)).length).toBe(opsBefore);
    expect(await h.deps.queues.hosts.getJobCounts('waiting', 'active', 'completed', 'waiting-children')).toEqual(before);
  });

  it('sweeps all 99 hosts', async () => {
    await h.run('find stale ports hyp01..hyp99');
    const op = await h.waitForOp(undefined, 60_000);
    expect(op.status).toBe('succeeded');
    expect(Object.keys(await h.deps.ops.results(op.id))).toHaveLength(99);
  });
});
