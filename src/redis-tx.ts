/**
 * Optimistic transactions (WATCH / MULTI / EXEC) on one dedicated connection per owner. WATCH
 * state belongs to a connection, so transactions on it run one at a time; across processes
 * WATCH does the work. One long-lived connection instead of one per transaction keeps
 * connection set-up off hot paths (every migration, every operation update).
 */
import type { ChainableCommander, Redis } from 'ioredis';

/** The watched data changed on every attempt. */
export class TxConflictError extends Error {
  constructor(readonly attempts: number) {
    super(`the data kept changing under a transaction; gave up after ${attempts} attempts`);
    this.name = 'TxConflictError';
  }
}

export type TxStep<T> = (conn: Redis) => Promise<{ multi: ChainableCommander; result: T } | { done: T }>;

export class OptimisticTx {
  private conn: Redis | undefined;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly open: () => Redis) {}

  /**
   * Run `step` until its MULTI executes without a watched key having changed, at most
   * `attempts` times. `step` WATCHes, reads, and returns the MULTI to execute (or `done` to
   * finish without writing). Any error unwatches before it propagates.
   */
  run<T>(step: TxStep<T>, attempts?: number): Promise<T>;
  /**
   * With `confirm`: it runs on the same connection right after the MULTI executed (or the step
   * was done), before any other transaction, and its answer comes back with the result.
   */
  run<T>(step: TxStep<T>, attempts: number, confirm: (conn: Redis) => Promise<boolean>): Promise<{ result: T; confirmed: boolean }>;
  run<T>(step: TxStep<T>, attempts = 50, confirm?: (conn: Redis) => Promise<boolean>): Promise<T | { result: T; confirmed: boolean }> {
    if (confirm) {
      return this.serial(async () => {
        const result = await this.attempt(step, attempts);
        return { result, confirmed: await confirm(this.conn!) };
      });
    }
    return this.serial(() => this.attempt(step, attempts));
  }

  private serial<R>(go: () => Promise<R>): Promise<R> {
    const next = this.tail.then(go, go);
    this.tail = next.catch(() => undefined);
    return next;
  }

  private async attempt<T>(step: TxStep<T>, attempts: number): Promise<T> {
    this.conn ??= this.open();
    const conn = this.conn;
    for (let i = 0; i < attempts; i++) {
      let out: Awaited<ReturnType<TxStep<T>>>;
      try {
        out = await step(conn);
      } catch (e) {
        await conn.unwatch().catch(() => undefined);
        throw e;
      }
      if ('done' in out) {
        await conn.unwatch();
        return out.done;
      }
      if (await out.multi.exec()) return out.result;
    }
    throw new TxConflictError(attempts);
  }

  close(): void {
    this.conn?.disconnect();
    this.conn = undefined;
  }
}
