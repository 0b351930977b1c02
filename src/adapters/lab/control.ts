/**
 * Lab controls: fault injection and reset. Faults are per host ("hyp07") or per VM ("vm:web01"):
 *   unreachable            every call times out
 *   slow:<ms>              calls take <ms> instead of the lab latency
 *   fail:<op>              calls of <op> fail (describe|vms|npiv|migrate|maintenance|remove|*)
 *   fail-once:<op>         the next call of <op> fails, then the fault clears
 *   fail:hook              runCommand (the patch hook) exits 1 with an error on stderr instead
 *                          of succeeding (fail-once:hook: only the next one; fail:* too)
 *   migrate-fail           (on vm:<name>) its migrations fail at 60%
 *   migrate-fail-once      (on vm:<name>) the next migration fails at 60%
 *   migrate-fail-after     (on vm:<name>) its migrations complete (the VM runs on the target)
 *                          and then report a failure, not retryable: a timeout or a platform
 *                          error after switch-over (migrate-fail-after-once: only the next one)
 *   linger                 migrations from this host leave the VM's NPIV ports behind (seed 000)
 * Several faults: comma-separated.
 */
import type { Redis } from 'ioredis';

export type LabFault =
  | { kind: 'unreachable'; raw: string }
  | { kind: 'slow'; ms: number; raw: string }
  | { kind: 'fail'; op: string; once: boolean; raw: string }
  | { kind: 'migrate-fail'; once: boolean; raw: string }
  | { kind: 'migrate-fail-after'; once: boolean; raw: string }
  | { kind: 'linger'; raw: string };

export function labKeys(prefix: string) {
  return {
    seeded: `${prefix}:lab:seeded`,
    faults: `${prefix}:lab:faults`,
    host: (h: string) => `${prefix}:lab:host:${h}`,
    pattern: `${prefix}:lab:*`,
  };
}

export function parseFaults(spec: string): LabFault[] {
  const out: LabFault[] = [];
  for (const raw of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [name, arg] = raw.split(':', 2) as [string, string | undefined];
    if (name === 'unreachable') out.push({ kind: 'unreachable', raw });
    else if (name === 'slow') out.push({ kind: 'slow', ms: Number(arg ?? 5000), raw });
    else if (name === 'fail' || name === 'fail-once') out.push({ kind: 'fail', op: arg ?? '*', once: name === 'fail-once', raw });
    else if (name === 'migrate-fail' || name === 'migrate-fail-once') out.push({ kind: 'migrate-fail', once: name === 'migrate-fail-once', raw });
    else if (name === 'migrate-fail-after' || name === 'migrate-fail-after-once') out.push({ kind: 'migrate-fail-after', once: name === 'migrate-fail-after-once', raw });
    else if (name === 'linger') out.push({ kind: 'linger', raw });
    else throw new Error(`unknown lab fault "${raw}"`);
  }
  return out;
}

export async function setLabFault(redis: Redis, prefix: string, target: string, spec: string | null): Promise<void> {
  const keys = labKeys(prefix);
  if (spec === null || spec === '') {
    await redis.hdel(keys.faults, target);
    return;
  }
  parseFaults(spec); // validate
  await redis.hset(keys.faults, target, spec);
}

/** Forget the lab's state: the next call re-seeds it from configuration. */
export async function resetLab(redis: Redis, prefix: string): Promise<void> {
  const keys = labKeys(prefix);
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', keys.pattern, 'COUNT', 500);
    cursor = next;
    if (found.length) await redis.del(...found);
  } while (cursor !== '0');
}
