import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Queue, Worker } from 'bullmq';
import { resolveRedisUrl, connectUrl, revivable, selfHealing } from '../src/redis.js';
import { runScript } from '../src/redis-scripts.js';
import { eventually } from './support/wait.js';
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
      await runScript(conn, 'raise-seq', ['seq'], [3]);
      conn.defineCommand('firstKey', { numberOfKeys: 1, lua: 'return KEYS[1]' });
      const firstKey = () => (conn as unknown as { firstKey(k: string): Promise<string> }).firstKey('x');
      expect(await firstKey()).toBe('x');
      const ended = new Promise((r) => conn.once('end', r));
      await killer.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      await ended;
      expect(await conn.get('k')).toBe('v1');
      expect(rebuilt).toEqual(['the connection ended without being closed']);
      // Ferry's Lua commands were defined on the old client: the rebuilt one has them too (a
      // failover once left every scripted write failing with "no Redis script").
      expect(await runScript(conn, 'raise-seq', ['seq'], [5])).toBeDefined();
      expect(await conn.get('seq')).toBe('5');
      expect(await firstKey()).toBe('x');
      // Closed by its owner: not rebuilt.
      await conn.quit();
      expect(rebuilt).toHaveLength(1);
    } finally {
      killer.disconnect();
      await server.close();
    }
  });
});

describe('BullMQ connections closed for good are connected again', () => {
  it('a queue and a worker whose clients ended (ioredis "end") take and run the next job; without revivable they stay closed', async () => {
    const server = await startPrivateRedis();
    // retryStrategy null: every client (and BullMQ's duplicates of it) ends for good at its first disconnection.
    const client = () => new Redis(server.url, { retryStrategy: () => null, maxRetriesPerRequest: null }).on('error', () => undefined);
    const revived: string[] = [];
    const [qConn, wConn, plainConn] = [revivable(client(), (why) => revived.push(why)), revivable(client(), (why) => revived.push(why)), client()];
    const prefix = `revive-${process.pid}`;
    const ran: string[] = [];
    const queue = new Queue('q', { connection: qConn, prefix });
    const worker = new Worker('q', async (job) => void ran.push(String(job.data.n)), { connection: wConn, prefix });
    // The control: BullMQ's own recovery only reconnects its blocking connection, not the one it was given.
    const plain = new Worker('other', async () => undefined, { connection: plainConn, prefix });
    for (const w of [worker, plain]) w.on('error', () => undefined);
    const killer = new Redis(server.url);
    try {
      await Promise.all([queue.waitUntilReady(), worker.waitUntilReady(), plain.waitUntilReady()]);
      await queue.add('a', { n: 1 });
      await eventually(() => ran.includes('1'), 'the first job to run');
      const ended = Promise.all([qConn, wConn, plainConn].map((c) => new Promise((r) => c.once('end', r))));
      await killer.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      await ended;
      await queue.add('b', { n: 2 });
      await eventually(() => ran.includes('2'), 'the job added after the kill to run');
      expect(revived).toEqual(['the connection ended without being closed', 'the connection ended without being closed']);
      expect(plainConn.status).toBe('end');
      // Closed by its owner: left closed.
      await worker.close();
      await queue.close();
      await Promise.all([qConn.quit(), wConn.quit()]);
      await new Promise((r) => setTimeout(r, 200));
      expect([qConn.status, wConn.status]).toEqual(['end', 'end']);
      expect(revived).toHaveLength(2);
    } finally {
      await plain.close().catch(() => undefined);
      for (const c of [qConn, wConn, plainConn, killer]) c.disconnect();
      await server.close();
    }
  });
});
