/**
 * Patch windows in Redis. One JSON record per window (with a revision that changes whenever
 * the start, duration or hosts change), an index by start time, and one hash of announcement
 * states per window. The announcement hash is what makes posting exactly-once across
 * processes: a field is claimed with HSETNX before anything is posted, so whoever wins the
 * claim posts and everyone else sees the claim.
 *
 * Keys (under the runtime prefix):
 *   pw:seq                 window id counter ("window 7")
 *   pw:<id>                JSON of the window
 *   pw:index               zset id -> startMs (every window ever recorded; cancelled ones too)
 *   pw:<id>:ann            hash "<announcement key>@<destination>" -> AnnouncementState JSON
 *   pw:lock                short lock around "check overlaps + record" so two concurrent
 *                          `patch window` commands cannot both pass the overlap check
 */
import type { Runtime } from '../../runtime.js';
import { runScript } from '../../redis-scripts.js';
import { withMutex } from '../../mutex.js';
import type { Window } from '../../core/windows.js';
import type { Conversation } from '../../chat/conversation.js';

export interface PatchWindow extends Window {
  /** Where the window was created; announcements are also posted there. */
  conv: Conversation;
  /** The rolling run's operation id, once it started. */
  runOpId?: number;
  cancelledBy?: string;
  cancelledAtMs?: number;
}

export type AnnouncementState =
  | { state: 'posting'; by: string; atMs: number; token: string }
  | { state: 'posted'; atMs: number; late: boolean; retried?: boolean }
  | { state: 'skipped'; atMs: number; reason: string };

export class WindowStore {
  constructor(private readonly rt: Runtime) {}

  private k(...parts: (string | number)[]): string {
    return this.rt.key('pw', ...parts);
  }

  /** Run `fn` while holding the store's write lock (bounded wait; Redis-side expiry guards crashes). */
  async withLock<T>(fn: () => Promise<T>, waitMs = 5000): Promise<T> {
    const got = await withMutex(this.rt.redis, this.k('lock'), { ttlMs: 10_000, waitMs }, fn);
    if (!got.ok) throw new Error('patch windows are busy (another change is being recorded); try again');
    return got.value;
  }

  async nextId(): Promise<string> {
    return String(await this.rt.redis.incr(this.k('seq')));
  }

  async save(w: PatchWindow): Promise<void> {
    await this.rt.redis.multi().set(this.k(w.id), JSON.stringify(w)).zadd(this.k('index'), w.startMs, w.id).exec();
  }

  async get(id: string): Promise<PatchWindow | null> {
    const raw = await this.rt.redis.get(this.k(id));
    return raw ? (JSON.parse(raw) as PatchWindow) : null;
  }

  /** Windows that end after `sinceMs` (upcoming and running; cancelled ones included unless excluded). */
  async list(opts: { sinceMs?: number; includeCancelled?: boolean } = {}): Promise<PatchWindow[]> {
    const ids = await this.rt.redis.zrange(this.k('index'), 0, -1);
    if (!ids.length) return [];
    const raws = await this.rt.redis.mget(ids.map((id) => this.k(id)));
    const all = raws.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as PatchWindow);
    return all
      .filter((w) => (opts.includeCancelled ? true : w.status !== 'cancelled'))
      .filter((w) => opts.sinceMs === undefined || w.startMs + w.durationMs > opts.sinceMs)
      .sort((a, b) => a.startMs - b.startMs || Number(a.id) - Number(b.id));
  }

  /**
   * Read-modify-write under the store lock. `expect` guards against acting on a stale view: the
   * change applies only if the window still has that revision and status; null otherwise.
   */
  async update(id: string, expect: Pick<Window, 'revision' | 'status'>, change: Partial<PatchWindow>): Promise<PatchWindow | null> {
    return this.withLock(async () => {
      const w = await this.get(id);
      if (!w || w.revision !== expect.revision || w.status !== expect.status) return null;
      const next = { ...w, ...change };
      await this.save(next);
      return next;
    });
  }

  // ---- announcements ----------------------------------------------------------------------

  async announcementStates(id: string): Promise<Record<string, AnnouncementState>> {
    const all = await this.rt.redis.hgetall(this.k(id, 'ann'));
    return Object.fromEntries(Object.entries(all).map(([k, v]) => [k, JSON.parse(v) as AnnouncementState]));
  }

  /** Claim a field; true only for the one caller that created it. */
  async claim(id: string, field: string, state: AnnouncementState): Promise<boolean> {
    return (await this.rt.redis.hsetnx(this.k(id, 'ann'), field, JSON.stringify(state))) === 1;
  }

  /** Replace a field only if it still holds `expected` (taking over a stale 'posting' claim). */
  async replaceIf(id: string, field: string, expected: AnnouncementState, next: AnnouncementState): Promise<boolean> {
    const ok = await runScript(this.rt.redis, 'hash-replace-if', [this.k(id, 'ann')], [field, JSON.stringify(expected), JSON.stringify(next)]);
    return Number(ok) === 1;
  }

  async setState(id: string, field: string, state: AnnouncementState): Promise<void> {
    await this.rt.redis.hset(this.k(id, 'ann'), field, JSON.stringify(state));
  }
}
