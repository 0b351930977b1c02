import { afterAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { Redis } from 'ioredis';
import { OptimisticTx, TxConflictError } from '../src/redis-tx.js';
import { uniquePrefix } from './support/harness.js';

describe('OptimisticTx', () => {
  const admin = new Redis(inject('redisUrl'));
  const a = new OptimisticTx(() => new Redis(inject('redisUrl')));
  const b = new OptimisticTx(() => new Redis(inject('redisUrl')));
  afterAll(async () => {
    a.close();
    b.close();
    await admin.quit();
  });

  const bump = (tx: OptimisticTx, key: string, field: string) =>
    tx.run(async (conn) => {
      await conn.watch(key);
      const doc = JSON.parse((await conn.get(key)) ?? '{}') as Record<string, number>;
      doc[field] = (doc[field] ?? 0) + 1;
      return { multi: conn.multi().set(key, JSON.stringify(doc)), result: doc[field] };
    });

  it('two owners (two processes) racing read-modify-write lose no update', async () => {
    const key = `${uniquePrefix('tx')}:doc`;
    await Promise.all(Array.from({ length: 40 }, (_, i) => bump(i % 2 ? a : b, key, i % 4 < 2 ? 'x' : 'y')));
    expect(JSON.parse((await admin.get(key))!)).toEqual({ x: 20, y: 20 });
  });

  it('an error in a step unwatches, so the next transaction on the connection is not poisoned', async () => {
    const key = `${uniquePrefix('tx')}:doc`;
    await expect(
      a.run(async (conn) => {
        await conn.watch(key);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    await admin.set(key, '{"x":5}'); // would fail the next EXEC if the old WATCH were still there
    expect(await bump(a, key, 'x')).toBe(6);
  });

  it('gives up with TxConflictError when the data changes on every attempt', async () => {
    const key = `${uniquePrefix('tx')}:doc`;
    const err = await a
      .run(async (conn) => {
        await conn.watch(key);
        await admin.incr(key);
        return { multi: conn.multi().set(key, '0'), result: 0 };
      }, 3)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TxConflictError);
  });
});
