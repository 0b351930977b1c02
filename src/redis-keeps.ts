/**
 * Does this Redis keep what Ferry writes? Drain ledgers, approvals, operation ids and the audit
 * trail live only in Redis: an evicting maxmemory-policy or a server that persists nothing
 * loses them silently. Checked at start; each problem is one sentence naming the setting.
 * FERRY_ALLOW_UNSAFE_REDIS=1 starts anyway (tests, throwaway labs).
 */
import type { Redis } from 'ioredis';

export const UNSAFE_OVERRIDE = 'FERRY_ALLOW_UNSAFE_REDIS';

function field(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
}

/** The settings that would lose Ferry's data; empty when Redis keeps it. */
export async function redisKeepProblems(redis: Redis): Promise<string[]> {
  const problems: string[] = [];
  const memory = await redis.info('memory');
  const policy = field(memory, 'maxmemory_policy');
  if (policy && policy !== 'noeviction') {
    problems.push(`Redis maxmemory-policy is ${policy}, which evicts keys under memory pressure and would drop drain ledgers and approvals: set maxmemory-policy noeviction.`);
  }
  const persistence = await redis.info('persistence');
  const aof = field(persistence, 'aof_enabled') === '1';
  if (!aof) {
    // RDB snapshots count too; CONFIG may be disabled on managed Redis, where we cannot tell.
    const save = await redis.call('CONFIG', 'GET', 'save').then(
      (r) => (Array.isArray(r) ? String(r[1] ?? '') : ''),
      () => undefined,
    );
    if (save === undefined) {
      problems.push(`Redis has appendonly (AOF) off and Ferry cannot read its save (RDB) setting (CONFIG is not allowed): turn on appendonly yes, or set ${UNSAFE_OVERRIDE}=1 if snapshots are on.`);
    } else if (save.trim() === '') {
      problems.push('Redis persists nothing (appendonly no and save ""), so a restart loses every drain ledger, approval and audit entry: set appendonly yes (or a save schedule).');
    }
  }
  return problems;
}

/** Throws one paragraph naming each setting, unless the override is set (then returns them as warnings). */
export async function assertRedisKeeps(redis: Redis, env: NodeJS.ProcessEnv): Promise<string[]> {
  const problems = await redisKeepProblems(redis);
  if (problems.length && env[UNSAFE_OVERRIDE] !== '1') {
    throw new RedisUnsafeError(`${problems.join(' ')} (${UNSAFE_OVERRIDE}=1 starts Ferry anyway.)`);
  }
  return problems;
}

export class RedisUnsafeError extends Error {
  override name = 'RedisUnsafeError';
}
