/**
 * One Slack send budget shared by every Ferry process (Redis): chat.postMessage at 1 per
 * second per channel, chat.update at Tier 3 (~50 per minute) per workspace, chat.postEphemeral
 * at Tier 4 (~100 per minute) per workspace, and a
 * Retry-After pause per method when Slack says so. GCRA: each call reserves the next slot
 * atomically (src/lua/slack-reserve.lua) and waits until it comes; no process can overtake
 * another. The clock is Redis's TIME, so processes whose clocks differ share one budget.
 */
import type { Redis } from 'ioredis';
import { runScript } from '../../redis-scripts.js';

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
  ) {}

  /** Milliseconds to wait before this call may go; the slot is reserved. */
  async reserve(method: string, channel?: string): Promise<number> {
    const plan = PLANS[method] ?? { intervalMs: 1000, burst: 5, perChannel: false };
    const scope = plan.perChannel && channel ? `${method}:${channel}` : method;
    const wait = await runScript(this.redis, 'slack-reserve', [`${this.prefix}:slack:budget:${scope}`, `${this.prefix}:slack:blocked:${method}`], [String(plan.intervalMs), String(plan.burst)]);
    return Math.max(0, Number(wait));
  }

  async acquire(method: string, channel?: string): Promise<void> {
    const wait = await this.reserve(method, channel);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }

  /** Slack answered 429: nobody calls this method before Retry-After has passed. */
  async blockFor(method: string, seconds: number): Promise<void> {
    // Never shortens a longer block another process recorded.
    await runScript(this.redis, 'slack-block', [`${this.prefix}:slack:blocked:${method}`], [String(seconds)]);
  }
}
