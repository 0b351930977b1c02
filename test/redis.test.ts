import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { resolveRedisUrl, connectUrl, selfHealing } from '../src/redis.js';
import { startPrivateRedis } from './support/redis-server.js';
import { freePort } from './support/slack.js';

describe('finding Redis for npm start', () => {
  it('REDIS_URL wins', async () => {
    expect(await resolveRedisUrl({ REDIS_URL: 'redis://example:1' }, { launch: true })).toEqual({ url: 'redis://example:1' });
  });

  it('nothing answering and redis-server on PATH: launches a private one on a unix socket', async () => {
    const port = await freePort();
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-data-'));
    const r = await resolveRedisUrl({ PATH: process.env.PATH, FERRY_REDIS_DIR: dataDir }, { launch: true, probePort: port });
    expect(r.url).toMatch(/^redis\+unix:\/\//);
    const c = connectUrl(r.url);
    expect(await c.ping()).toBe('PONG');
    // With AOF in a directory that outlives it (issue 13: a restart forgot a drain's ledger).
    expect(await c.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    await c.set('ferry:ledger:hyp03', 'kept');
    c.disconnect();
    await r.launched?.();
    const again = await resolveRedisUrl({ PATH: process.env.PATH, FERRY_REDIS_DIR: dataDir }, { launch: true, probePort: port });
    const c2 = connectUrl(again.url);
    expect(await c2.get('ferry:ledger:hyp03')).toBe('kept');
    c2.disconnect();
    await again.launched?.();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('nothing answering and no redis-server: one sentence saying how to get it', async () => {
    const port = await freePort();
    await expect(resolveRedisUrl({ PATH: '/nonexistent' }, { launch: true, probePort: port })).rejects.toThrow(
      'Ferry needs Redis: set REDIS_URL, or install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) and run npm start again.',
    );
  });

  it('web and worker never launch one', async () => {
    const port = await freePort();
    await expect(resolveRedisUrl({}, { launch: false, probePort: port })).rejects.toThrow(/No Redis: set REDIS_URL/);
  });
});

describe('a connection closed for good is rebuilt', () => {
  it('after its client gives up reconnecting (ioredis "end"), the next command runs on a new one', async () => {
    const server = await startPrivateRedis();
    const rebuilt: string[] = [];
    // retryStrategy null: the client ends for good at its first disconnection, as a failover can leave it.
    const conn = selfHealing(() => new Redis(server.url, { retryStrategy: () => null, maxRetriesPerRequest: null }).on('error', () => undefined), (why) => rebuilt.push(why));
    const killer = new Redis(server.url);
    try {
      await conn.set('k', 'v1');
      const ended = new Promise((r) => conn.once('end', r));
      await killer.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      await ended;
      expect(await conn.get('k')).toBe('v1');
      expect(rebuilt).toEqual(['the connection ended without being closed']);
      // Closed by its owner: not rebuilt.
      await conn.quit();
      expect(rebuilt).toHaveLength(1);
    } finally {
      killer.disconnect();
      await server.close();
    }
  });
});
