/**
 * The cost of one host in a sweep does not grow with the fleet: Redis traffic per host of a
 * 2,000-host sweep stays close to that of a 100-host sweep (each host job carries only its
 * host and touches O(1) keys; nothing per host reads the operation record with every host
 * name). Measured on a private redis-server of this file's own, so no other test's traffic
 * is counted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';
import { bound } from '../support/speed.js';

const YAML = `
lab:
  seed: 7
  latencyMs: 0
limits:
  selectorMax: 2000
clusters:
  big:
    adapter: lab
    hosts: ["h[00001-02000]"]
groups:
  operators: [alice]
`;

async function redisStats(h: Harness): Promise<{ out: number; commands: number }> {
  const info = await h.rt.redis.info('stats');
  const num = (k: string) => Number(new RegExp(`^${k}:(\\d+)`, 'm').exec(info)?.[1] ?? NaN);
  return { out: num('total_net_output_bytes'), commands: num('total_commands_processed') };
}

describe('sweep cost per host', () => {
  let redis: PrivateRedis;
  let h: Harness;
  beforeAll(async () => {
    redis = await startPrivateRedis();
    h = await makeHarness({ yaml: YAML, redisUrl: redis.url });
  });
  afterAll(async () => {
    await h.close();
    await redis.close();
  });

  async function sweep(selector: string, n: number): Promise<{ outPerHost: number; commandsPerHost: number }> {
    const before = await redisStats(h);
    await h.run(`find stale ports ${selector}`);
    // Probes that cost a few bytes: the operation record of a large sweep is not read here, so
    // the measure is Ferry's traffic, not this test's polling.
    const id = Number(await h.rt.redis.get(h.rt.key('op', 'seq')));
    await h.waitFor(async () => (await h.rt.redis.exists(h.rt.key('card', id, 'final'))) === 1, `the ${n}-host sweep's final card`, 120_000);
    await h.waitFor(async () => h.transcript().includes(`(of ${n} swept)`) || h.transcript().includes(`No stale ports on ${n} host`), 'its summary', 30_000);
    const after = await redisStats(h);
    expect((await h.deps.ops.counters(id)).done).toBe(n);
    return { outPerHost: (after.out - before.out) / n, commandsPerHost: (after.commands - before.commands) / n };
  }

  it('Redis bytes and commands per host at 2,000 hosts stay within 1.5x of those at 100 hosts', async () => {
    const small = await sweep('h00001..h00100', 100);
    const large = await sweep('h00001..h02000', 2000);
    // The old per-host read of the whole record alone was ~18 kB per host at 2,000 hosts.
    expect(large.outPerHost).toBeLessThan(small.outPerHost * 1.5);
    expect(large.commandsPerHost).toBeLessThan(small.commandsPerHost * 1.5);
  }, bound(180_000));
});
