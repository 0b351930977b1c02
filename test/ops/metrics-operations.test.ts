/**
 * The operations gauge (issue 15, metrics: "operations by status"), read from a real Redis at
 * scrape time, wired as main.ts wires it: unfinished operations counted by kind and status, a
 * finished one gone from it, and a scrape whose Redis read does not answer in time leaves the
 * gauge out and counts a scrape error instead of hanging.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { LAB_DEFAULT_YAML } from '../../src/config/lab-default.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { silentLogger } from '../../src/log.js';
import { Operations } from '../../src/jobs/operations.js';
import { Metrics } from '../../src/metrics.js';
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';

const conv = { surface: 'console' as const, session: 's', user: 'alice' };
let redis: PrivateRedis;
let rt: Runtime;

beforeAll(async () => {
  redis = await startPrivateRedis();
  rt = createRuntime({ loaded: parseConfig(LAB_DEFAULT_YAML, 'test'), redisUrl: redis.url, log: silentLogger(), prefix: `test-metrics-ops-${process.pid}` });
});

afterAll(async () => {
  await rt?.close();
  await redis?.close();
});

it('ferry_operations counts unfinished operations by kind and status; a finished one leaves it', async () => {
  const ops = new Operations(rt);
  const create = (kind: string, host: string) => ops.create({ kind, title: `${kind} ${host}`, requester: 'alice', conv, hosts: [host], params: {} });
  const a = await create('drain', 'hyp01');
  const b = await create('drain', 'hyp02');
  await create('find-stale-ports', 'hyp03');
  await ops.patch(a.id, { status: 'running' });
  await ops.patch(b.id, { status: 'running' });
  // The runtime's registry, where Operations also counts what finished.
  const metrics = rt.metrics.withLiveGauges({ queueCounts: async () => [], activeOperations: () => ops.active() }, 2000);

  let text = await metrics.text();
  expect(text).toMatch(/^ferry_operations\{kind="drain",status="running"\} 2$/m);
  expect(text).toMatch(/^ferry_operations\{kind="find-stale-ports",status="queued"\} 1$/m);

  await ops.patch(b.id, { status: 'succeeded' });
  text = await metrics.text();
  expect(text).toMatch(/^ferry_operations\{kind="drain",status="running"\} 1$/m);
  expect(text).toMatch(/^ferry_operations_finished_total\{kind="drain",status="succeeded"\} 1$/m);
});

it('a scrape whose operations read does not answer in time leaves the gauge out and counts the error', async () => {
  const metrics = new Metrics().withLiveGauges({ queueCounts: async () => [], activeOperations: () => new Promise(() => undefined) }, 100);
  const t0 = Date.now();
  const text = await metrics.text();
  expect(Date.now() - t0).toBeLessThan(5000);
  expect(text).not.toMatch(/^ferry_operations\{/m);
  // prom-client reads every metric of a scrape at once, so the count shows from the next scrape on.
  expect(await metrics.text()).toMatch(/^ferry_metrics_scrape_errors_total\{gauge="ferry_operations"\} 1$/m);
});
