/**
 * Redis Sentinel: with REDIS_SENTINELS set, Ferry's connections find the primary through a real
 * redis-sentinel on loopback (never REDIS_URL or 6379), and bad settings are named.
 * Failover during a drain: test/e2e/sentinel-failover.test.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { connectUrl, resolveRedisUrl, sentinelUrl } from '../../src/redis.js';
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';
import { freePort, listening } from '../support/net.js';
import { eventually } from '../support/wait.js';

describe('Redis Sentinel', () => {
  let primary: PrivateRedis;
  let sentinel: ChildProcess;
  let sentinelPort: number;

  beforeAll(async () => {
    primary = await startPrivateRedis(['--appendonly', 'yes']);
    sentinelPort = await freePort();
    const conf = path.join(primary.dir, 'sentinel.conf');
    fs.writeFileSync(conf, `port ${sentinelPort}\nbind 127.0.0.1\ndir ${primary.dir}\nsentinel monitor ferry 127.0.0.1 ${primary.port} 1\n`);
    sentinel = spawn('redis-sentinel', [conf], { stdio: 'ignore' });
    await eventually(() => listening(sentinelPort), `redis-sentinel to listen on ${sentinelPort}`, 10_000);
  });

  afterAll(async () => {
    sentinel?.kill('SIGKILL');
    await primary?.close();
  });

  it('REDIS_SENTINELS wins over REDIS_URL, and the connection reaches the primary the sentinel names', async () => {
    const env = { REDIS_SENTINELS: `127.0.0.1:${sentinelPort}`, REDIS_URL: 'redis://127.0.0.1:1' };
    const { url } = await resolveRedisUrl(env, { launch: false });
    expect(url).toBe(`redis-sentinel://127.0.0.1:${sentinelPort}/ferry`);
    const viaSentinel = connectUrl(url);
    const direct = new Redis(primary.url);
    try {
      await viaSentinel.set('sentinel-probe', 'through the sentinel');
      expect(await direct.get('sentinel-probe')).toBe('through the sentinel');
      expect((await viaSentinel.call('ROLE')) as unknown[]).toContain('master');
      // A duplicate (BullMQ's blocking connections) uses the same Sentinel options.
      const dup = viaSentinel.duplicate();
      expect(await dup.get('sentinel-probe')).toBe('through the sentinel');
      dup.disconnect();
    } finally {
      viaSentinel.disconnect();
      direct.disconnect();
    }
  });

  it('carries the master name, passwords and TLS; names a bad entry', () => {
    expect(sentinelUrl({ REDIS_SENTINELS: 'a:26379, b:26380', REDIS_SENTINEL_MASTER: 'prod', REDIS_PASSWORD: 'p w', REDIS_TLS: '1' })).toBe('redis-sentinel://a:26379,b:26380/prod?REDIS_PASSWORD=p+w&REDIS_TLS=1');
    expect(sentinelUrl({})).toBeUndefined();
    expect(() => sentinelUrl({ REDIS_SENTINELS: 'a:26379,b' })).toThrow('REDIS_SENTINELS must be host:port[,host:port…], and "b" is not host:port.');
  });
});
