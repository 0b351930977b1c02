/** A 10,000-host lab is made one host at a time on first use, the same in every process. */
import { afterAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { silentLogger } from '../../src/log.js';
import { findStalePorts } from '../../src/core/stale-ports.js';
import { uniquePrefix } from '../support/harness.js';

const YAML = `
lab:
  seed: 42
  latencyMs: 0
limits:
  selectorMax: 10000
clusters:
  big:
    adapter: lab
    hosts: ["h[00001-10000]"]
`;

describe('large lab fleet', () => {
  const prefix = uniquePrefix('lab-large');
  const runtimes: Runtime[] = [];
  const runtime = () => {
    const rt = createRuntime({ loaded: parseConfig(YAML, 'test'), redisUrl: inject('redisUrl'), log: silentLogger(), prefix });
    runtimes.push(rt);
    return rt;
  };
  afterAll(async () => {
    await Promise.all(runtimes.map((rt) => rt.close()));
  });

  it('stores only the hosts used, and two processes see the same host', async () => {
    const a = runtime();
    const inv = await a.adapters.forHost('h07342').npivInventory('h07342');
    expect(inv.hbas).toHaveLength(2);
    const keys = await a.redis.keys(`${prefix}:lab:host:*`);
    expect(keys.length).toBeLessThanOrEqual(2);
    const b = runtime();
    expect(await b.adapters.forHost('h07342').npivInventory('h07342')).toEqual(inv);
    // Stale ports exist somewhere in a sample, as in the small lab.
    const sample = await Promise.all(['h00001', 'h00002', 'h00003', 'h00004', 'h00005', 'h00006', 'h00007', 'h00008'].map((h) => b.adapters.forHost(h).npivInventory(h)));
    expect(sample.flatMap((i) => findStalePorts(i)).length).toBeGreaterThan(0);
  });
});
