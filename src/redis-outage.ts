/**
 * Ferry without its Redis (issue 13, item 10): one log line when the outage starts and one with
 * its duration when Redis is back, instead of ioredis' "Unhandled error event" for every
 * connection on every retry; and a flag the Slack app reads to answer "Ferry cannot reach its
 * Redis" inside Slack's 3 s instead of hanging on a command that cannot run.
 */
import type { Redis } from 'ioredis';
import type { Logger } from './log.js';

/** What a user is told when a command arrives and Redis cannot be reached. */
export const REDIS_DOWN_SENTENCE = 'Ferry cannot reach its Redis; nothing was started. Try again in a minute; operations already running carry on once it is back.';

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);

export class RedisOutage {
  private downSince: number | undefined;
  private readonly watched = new WeakSet<Redis>();
  private readonly listeners = new Set<(downMs: number) => void>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Listen to a connection's errors (also keeps ioredis from printing each one unhandled). */
  watch<T extends Redis>(conn: T): T {
    if (this.watched.has(conn)) return conn;
    this.watched.add(conn);
    conn.on('error', (e: Error) => this.failed(e));
    conn.on('ready', () => this.back());
    return conn;
  }

  /** Called once when Redis answers again after an outage, with its length. */
  onBack(fn: (downMs: number) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  get down(): boolean {
    return this.downSince !== undefined;
  }

  /** Errors that mean Redis is unreachable (as opposed to a bad command). */
  isConnectionError(e: unknown): boolean {
    const err = e as { code?: string; message?: string };
    return CONNECTION_CODES.has(err.code ?? '') || /ECONNREFUSED|ECONNRESET|Connection is closed|connect ETIMEDOUT|Stream isn't writeable/i.test(err.message ?? '');
  }

  failed(e: unknown): void {
    if (!this.isConnectionError(e)) {
      this.log.error({ err: e instanceof Error ? e.message : String(e) }, 'Redis error');
      return;
    }
    if (this.downSince !== undefined) return;
    this.downSince = this.now();
    const err = e as { code?: string; message?: string };
    this.log.error({ err: err.code ?? err.message }, `Ferry cannot reach its Redis (${err.code ?? err.message}); commands are answered with that until it is back`);
  }

  back(): void {
    if (this.downSince === undefined) return;
    const ms = this.now() - this.downSince;
    this.downSince = undefined;
    this.log.warn({ downMs: ms }, `Redis is back after ${Math.round(ms / 1000)} s`);
    for (const fn of this.listeners) fn(ms);
  }
}
