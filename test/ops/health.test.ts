/**
 * Health that tells the truth: readiness over a real Redis that is killed and restarted on the
 * same port answers 503 within its bound (not a pending PING), and 200 again once Redis is back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { Health, healthRedisOptions, redisCheck } from '../../src/health.js';
import { Metrics } from '../../src/metrics.js';
import { connectUrl } from '../../src/redis.js';
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';
import { bound } from '../support/speed.js';

const BOUND_MS = 500;

async function get(port: number, path: string): Promise<{ status: number; ms: number; body: string }> {
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  const body = await res.text();
  return { status: res.status, ms: performance.now() - t0, body };
}

async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('health: liveness, readiness with bounded checks, metrics', () => {
  let redis: PrivateRedis;
  let conn: Redis;
  let health: Health;
  let port: number;
  let hang = false;

  beforeAll(async () => {
    redis = await startPrivateRedis();
    conn = connectUrl(redis.url, healthRedisOptions(BOUND_MS));
    health = new Health({ checkTimeoutMs: BOUND_MS });
    health.add('redis', redisCheck(conn));
    health.add('stuck', () => (hang ? new Promise<never>(() => undefined) : 'fine'));
    const metrics = new Metrics().withProcessDefaults();
    metrics.slackCalls.labels('chat.postMessage').inc(3);
    metrics.slackRateLimited.labels('chat.update').inc();
    port = await health.listen(0, '127.0.0.1', metrics);
  });

  afterAll(async () => {
    await health.close();
    conn.disconnect();
    await redis.close();
  });

  it('is live and ready while Redis answers', async () => {
    await until(async () => ((await get(port, '/readyz')).status === 200 ? true : undefined), 'first readiness');
    const live = await get(port, '/livez');
    expect(live.status).toBe(200);
    expect(JSON.parse(live.body)).toMatchObject({ ok: true, status: 'live' });
    const ready = await get(port, '/readyz');
    expect(JSON.parse(ready.body)).toMatchObject({ status: 'ready', checks: { redis: { ok: true }, stuck: { ok: true, detail: 'fine' } } });
    expect((await get(port, '/healthz')).status).toBe(200);
  });

  it('answers 503 within the bound while Redis is down, stays live, and is ready again once Redis is back', async () => {
    await redis.stop('SIGKILL');
    // Several probes during the outage: each answers 503 within the bound (plus scheduling slack).
    for (let i = 0; i < 3; i++) {
      const r = await get(port, '/readyz');
      expect(r.status).toBe(503);
      expect(r.ms).toBeLessThan(BOUND_MS + bound(1500));
      const body = JSON.parse(r.body) as { status: string; checks: Record<string, { ok: boolean; detail?: string }> };
      expect(body.status).toBe('not ready');
      expect(body.checks.redis!.ok).toBe(false);
      expect(body.checks.redis!.detail).toBeTruthy();
      expect(body.checks.stuck!.ok).toBe(true);
    }
    expect((await get(port, '/livez')).status).toBe(200);
    await redis.start();
    await until(async () => ((await get(port, '/readyz')).status === 200 ? true : undefined), 'readiness after Redis came back');
  });

  it('a check that never settles is cut at its bound and named', async () => {
    hang = true;
    try {
      const r = await get(port, '/readyz');
      expect(r.status).toBe(503);
      expect(r.ms).toBeLessThan(BOUND_MS + bound(1500));
      expect(JSON.parse(r.body).checks.stuck).toMatchObject({ ok: false, detail: `stuck did not answer within ${BOUND_MS} ms` });
    } finally {
      hang = false;
    }
  });

  it('serves Prometheus text with process defaults and Ferry’s counters', async () => {
    const r = await get(port, '/metrics');
    expect(r.status).toBe(200);
    expect(r.body).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(r.body).toMatch(/^nodejs_eventloop_lag_seconds /m);
    expect(r.body).toMatch(/^ferry_slack_calls_total\{method="chat.postMessage"\} 3$/m);
    expect(r.body).toMatch(/^ferry_slack_rate_limited_total\{method="chat.update"\} 1$/m);
    expect((await get(port, '/nope')).status).toBe(404);
  });
});
