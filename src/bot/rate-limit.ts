/**
 * Per-user command rate (issue 13: 2,000 commands in 20 s from one user booked a channel's
 * Slack budget minutes ahead and silenced everyone else). Each person may send `max` commands
 * per `windowMs`, counted in Redis across every web process. The first command over the limit
 * is refused with one sentence; the rest of that window are dropped without an answer, an
 * audit entry or any Slack call, so a flood costs nothing but this counter.
 */
import type { Redis } from 'ioredis';
import { runScript } from '../redis-scripts.js';
import { refusal, type Refusal } from '../core/refusal.js';

export const USER_COMMANDS_MAX = Number(process.env.FERRY_USER_COMMANDS_MAX ?? 20);
export const USER_COMMANDS_WINDOW_MS = Number(process.env.FERRY_USER_COMMANDS_WINDOW_MS ?? 10_000);

/**
 * Over the limit: the refusal, and whether this flood was told already (told once per flood:
 * the mark lasts while it goes on), in which case the command is dropped without a word.
 */
export interface RateRefusal extends Refusal {
  readonly code: 'rate-limited';
  readonly quiet: boolean;
}

/** Count this command: null when it is within the limit. */
export async function userRate(redis: Redis, prefix: string, user: string, now = Date.now(), max = USER_COMMANDS_MAX, windowMs = USER_COMMANDS_WINDOW_MS): Promise<RateRefusal | null> {
  const slot = Math.floor(now / windowMs);
  const [n, tell] = (await runScript(redis, 'user-rate', [`${prefix}:ratelimit:user:${user}:${slot}`, `${prefix}:ratelimit:told:${user}`], [String(windowMs * 2), String(max)])) as [number, number];
  if (n <= max) return null;
  const seconds = Math.max(1, Math.ceil(((slot + 1) * windowMs - now) / 1000));
  const sentence = `You sent more than ${max} commands in ${Math.round(windowMs / 1000)} s; Ferry ignores your commands for the next ${seconds} s. Nothing was started.`;
  return { ...refusal(sentence), code: 'rate-limited', quiet: tell !== 1 };
}
