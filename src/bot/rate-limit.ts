/**
 * Per-user command rate (issue 13: 2,000 commands in 20 s from one user booked a channel's
 * Slack budget minutes ahead and silenced everyone else). Each person may send `max` commands
 * per `windowMs`, counted in Redis across every web process. The first command over the limit
 * is refused with one sentence; the rest of that window are dropped without an answer, an
 * audit entry or any Slack call, so a flood costs nothing but this counter.
 */
import type { Redis } from 'ioredis';
import { runScript } from '../redis-scripts.js';

export const USER_COMMANDS_MAX = Number(process.env.FERRY_USER_COMMANDS_MAX ?? 20);
export const USER_COMMANDS_WINDOW_MS = Number(process.env.FERRY_USER_COMMANDS_WINDOW_MS ?? 10_000);

/** Count this command; over the limit, 1 when this flood has not been told yet (told once per flood: the mark lasts while it goes on). */
export type RateVerdict = { ok: true } | { ok: false; say: string | null };

export async function userRate(redis: Redis, prefix: string, user: string, now = Date.now(), max = USER_COMMANDS_MAX, windowMs = USER_COMMANDS_WINDOW_MS): Promise<RateVerdict> {
  const slot = Math.floor(now / windowMs);
  const [n, tell] = (await runScript(redis, 'user-rate', [`${prefix}:ratelimit:user:${user}:${slot}`, `${prefix}:ratelimit:told:${user}`], [String(windowMs * 2), String(max)])) as [number, number];
  if (n <= max) return { ok: true };
  const seconds = Math.max(1, Math.ceil(((slot + 1) * windowMs - now) / 1000));
  return { ok: false, say: tell === 1 ? `You sent more than ${max} commands in ${Math.round(windowMs / 1000)} s; Ferry ignores your commands for the next ${seconds} s. Nothing was started.` : null };
}
