/**
 * One Slack send budget shared by every Ferry process (Redis): chat.postMessage at 1 per
 * second per channel, chat.update at Tier 3 (~50 per minute) per workspace, chat.postEphemeral
 * at Tier 4 (~100 per minute) per workspace, and a
 * Retry-After pause per method when Slack says so. GCRA: each call reserves the next slot
 * atomically and waits until it comes; no process can overtake another.
 */
import type { Redis } from 'ioredis';

const RESERVE = `
local key = KEYS[1]
local blocked = KEYS[2]
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', key) or '0')
local until_ = tonumber(redis.call('GET', blocked) or '0')
if tat < now then tat = now end
if tat < until_ then tat = until_ end
local allowed_at = tat - interval * (burst - 1)
if allowed_at < now then allowed_at = now end
-- Retry-After is a floor: the burst allowance never lets a call go before it has passed.
if allowed_at < until_ then allowed_at = until_ end
local new_tat = tat + interval
redis.call('SET', key, new_tat, 'PX', math.ceil(new_tat - now + interval * burst + 1000))
return allowed_at - now
`;

const BLOCK = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

export interface RatePlan {
  intervalMs: number;
  burst: number;
}

/** Per-method plans; key scope says whether the budget is per channel or per workspace. */
export const PLANS: Record<string, RatePlan & { perChannel: boolean }> = {
  'chat.postMessage': { intervalMs: 1000, burst: 1, perChannel: true },
  // Tier 4 (100+ per minute) per workspace, not per channel.
  'chat.postEphemeral': { intervalMs: 600, burst: 10, perChannel: false },
  'chat.update': { intervalMs: 1200, burst: 5, perChannel: false },
  'files.uploadV2': { intervalMs: 3000, burst: 2, perChannel: false },
  // Tier 4 each (a streamed upload: URL, bytes, complete).
  'files.getUploadURLExternal': { intervalMs: 600, burst: 10, perChannel: false },
  'files.completeUploadExternal': { intervalMs: 600, burst: 10, perChannel: false },
  'views.publish': { intervalMs: 1200, burst: 5, perChannel: false },
};

export class SlackBudget {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds to wait before this call may go; the slot is reserved. */
  async reserve(method: string, channel?: string): Promise<number> {
    const plan = PLANS[method] ?? { intervalMs: 1000, burst: 5, perChannel: false };
    const scope = plan.perChannel && channel ? `${method}:${channel}` : method;
    const wait = (await this.redis.eval(
      RESERVE,
      2,
      `${this.prefix}:slack:budget:${scope}`,
      `${this.prefix}:slack:blocked:${method}`,
      String(this.now()),
      String(plan.intervalMs),
      String(plan.burst),
    )) as number;
    return Math.max(0, Number(wait));
  }

  async acquire(method: string, channel?: string): Promise<void> {
    const wait = await this.reserve(method, channel);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }

  /** Slack answered 429: nobody calls this method before Retry-After has passed. */
  async blockFor(method: string, seconds: number): Promise<void> {
    const until = this.now() + seconds * 1000;
    // Never shortens a longer block another process recorded.
    await this.redis.eval(BLOCK, 1, `${this.prefix}:slack:blocked:${method}`, String(until), String(seconds * 1000 + 1000));
  }
}
