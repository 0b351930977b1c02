/** The Lua files and the one mutex, against the real test Redis. */
import { afterAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { readdirSync } from 'node:fs';
import { Redis } from 'ioredis';
import { runScript, scriptDefs } from '../src/redis-scripts.js';
import { acquireMutex, withMutex } from '../src/mutex.js';
import { fencedEval, withFence, isFencedOut } from '../src/jobs/fence.js';
import { SlackBudget } from '../src/bot/slack/budget.js';
import { uniquePrefix } from './support/harness.js';
import { eventually } from './support/wait.js';

const redis = new Redis(inject('redisUrl'));
afterAll(async () => redis.quit());

describe('Redis scripts', () => {
  it('one .lua file per command, each loads on Redis, and no source file carries inline Lua', async () => {
    const files = readdirSync(new URL('../src/lua/', import.meta.url)).filter((f) => f.endsWith('.lua'));
    expect([...scriptDefs().keys()].sort()).toEqual(files.map((f) => f.slice(0, -4)).sort());
    for (const d of scriptDefs().values()) expect(await redis.script('LOAD', d.lua)).toMatch(/^[0-9a-f]{40}$/);
    const inline = readdirSync(new URL('../src/', import.meta.url), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    const { readFileSync } = await import('node:fs');
    const offenders = inline.filter((f) => /\.eval\(|KEYS\[|ARGV\[/.test(readFileSync(new URL(`../src/${f}`, import.meta.url), 'utf8')));
    expect(offenders).toEqual([]);
  });

  it('a fenced script writes only while the run holds its job', async () => {
    const p = uniquePrefix('fence');
    await redis.set(`${p}:lock`, 'run-1');
    await withFence({ lockKey: `${p}:lock`, token: 'run-1', jobId: 'j' }, () => fencedEval(redis, 'fenced-set', [`${p}:k`], ['a']));
    expect(await redis.get(`${p}:k`)).toBe('a');
    const lost = await withFence({ lockKey: `${p}:lock`, token: 'run-0', jobId: 'j' }, () => fencedEval(redis, 'fenced-set', [`${p}:k`], ['b'])).catch((e: unknown) => e);
    expect(isFencedOut(lost)).toBe(true);
    expect(await redis.get(`${p}:k`)).toBe('a');
  });

  it("the Slack budget's Retry-After block is measured on Redis's clock", async () => {
    const p = uniquePrefix('budget');
    const budget = new SlackBudget(redis, p);
    await budget.blockFor('chat.update', 30);
    const wait = await budget.reserve('chat.update');
    // Whatever this process's clock says, the wait is Redis's "now + 30 s" less the time since.
    expect(wait).toBeGreaterThan(25_000);
    expect(wait).toBeLessThanOrEqual(30_000);
    const [s, us] = await redis.time();
    expect(Number(await redis.get(`${p}:slack:blocked:chat.update`))).toBeGreaterThan(Number(s) * 1000 + Math.floor(Number(us) / 1000) + 25_000);
  });
});

describe('Slack outbox enqueue', () => {
  it('made again with the same write id (a failover replay) gives the ids of the first run and queues nothing twice', async () => {
    const p = uniquePrefix('outbox-replay');
    const msg = (t: string) => `${JSON.stringify({ kind: 'post', channel: 'C0' })}\n${JSON.stringify({ text: t })}`;
    const enqueue = (wid: string, ...texts: string[]) => runScript(redis, 'outbox-enqueue', [], [p, 'p:C0:', 'hi', '', '60000', wid, ...texts.map(msg)]);
    const first = (await enqueue('w-1', 'a', 'b')) as number[];
    expect(await enqueue('w-1', 'a', 'b')).toEqual(first);
    expect(await redis.lrange(`${p}:outbox:lane:p:C0:`, 0, -1)).toEqual(first.map(String));
    // Another call is another message.
    const next = await enqueue('w-2', 'a');
    expect(next).toEqual([first[1]! + 1]);
  });
});

describe('mutex', () => {
  it('one holder at a time; a waiter blocks (BLPOP, no spinning) and gets it at release', async () => {
    const key = `${uniquePrefix('mutex')}:m`;
    const a = await acquireMutex(redis, key, { ttlMs: 60_000, waitMs: 1000 });
    expect(a).not.toBeNull();
    const order: string[] = [];
    const b = withMutex(redis, key, { ttlMs: 60_000, waitMs: 60_000 }, async () => void order.push('b ran'));
    // The waiter sits in BLPOP on the mutex's wake list.
    await eventually(async () => ((await redis.client('LIST')) as string).includes(`cmd=blpop`), 'the waiter blocked on the wake list');
    order.push('a released');
    await a!.release();
    expect(await b).toEqual({ ok: true, value: undefined });
    expect(order).toEqual(['a released', 'b ran']);
    expect(await redis.exists(key)).toBe(0);
  });

  it('gives up after waitMs, and only the holder releases', async () => {
    const key = `${uniquePrefix('mutex')}:m`;
    const a = await acquireMutex(redis, key, { ttlMs: 60_000, waitMs: 1000 });
    expect(await withMutex(redis, key, { ttlMs: 60_000, waitMs: 100 }, async () => 'never')).toEqual({ ok: false });
    await runScript(redis, 'mutex-unlock', [key, `${key}:wake`], ['not-the-token', '1000']);
    expect(await redis.exists(key)).toBe(1);
    await a!.release();
    expect(await redis.exists(key)).toBe(0);
  });
});
