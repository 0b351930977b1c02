/**
 * Lab controls: fault injection and reset. Faults are per host ("hyp07") or per VM ("vm:web01").
 * On a host:
 *   unreachable            every call times out
 *   slow:<ms>              calls take <ms> instead of the lab latency
 *   fail:<op>              calls of <op> fail (describe|vms|npiv|migrate|maintenance|save|remove|hook|*);
 *                          fail:migrate on a host fails every migration from it
 *   fail-once:<op>         the next call of <op> fails, then the fault clears
 *   fail:<op>@<n>          only the n-th call of <op> from now fails, then the fault clears
 *   fail:hook              runCommand (the patch hook) exits 1 with an error on stderr instead
 *                          of succeeding (fail-once:hook: only the next one; fail:* too)
 *   linger                 migrations from this host leave the VM's NPIV ports behind (seed 000)
 * On a VM (vm:<name>), whichever host it is on:
 *   migrate-fail           its migrations fail at 60% (nothing moved)
 *   migrate-fail-once      the next migration fails at 60%
 *   migrate-fail@<n>       its n-th migration from now fails at 60%, then the fault clears
 *   migrate-fail-after     its migrations complete (the VM runs on the target) and then report a
 *                          failure, not retryable: a timeout or a platform error after switch-over
 *                          (-once and @<n> as above)
 * Several faults: comma-separated. An unknown fault, a VM fault on a host or a host fault on a
 * VM is refused when configuration loads and when set at run time.
 */
import type { Redis } from 'ioredis';

/** `nth`: fire on that call only (counted from when the fault was set), then clear. */
export type LabFault =
  | { kind: 'unreachable'; raw: string }
  | { kind: 'slow'; ms: number; raw: string }
  | { kind: 'fail'; op: string; once: boolean; nth?: number; raw: string }
  | { kind: 'migrate-fail'; once: boolean; nth?: number; raw: string }
  | { kind: 'migrate-fail-after'; once: boolean; nth?: number; raw: string }
  | { kind: 'linger'; raw: string };

export const LAB_FAULT_OPS = ['describe', 'vms', 'npiv', 'migrate', 'maintenance', 'save', 'remove', 'hook', '*'];
const HOST_KINDS = new Set(['unreachable', 'slow', 'fail', 'linger']);

export function labKeys(prefix: string) {
  return {
    seeded: `${prefix}:lab:seeded`,
    faults: `${prefix}:lab:faults`,
    /** Calls counted per "<target>|<fault>" for faults on the n-th call. */
    calls: `${prefix}:lab:fault-calls`,
    host: (h: string) => `${prefix}:lab:host:${h}`,
    pattern: `${prefix}:lab:*`,
  };
}

export function parseFaults(spec: string): LabFault[] {
  const out: LabFault[] = [];
  for (const raw of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const at = /^(.*)@(\d+)$/.exec(raw);
    const body = at ? at[1]! : raw;
    const nth = at ? Number(at[2]) : undefined;
    if (nth !== undefined && nth < 1) throw new Error(`"${raw}": @<n> counts calls from 1`);
    const [name, arg] = body.split(':', 2) as [string, string | undefined];
    const counted = (f: LabFault): void => {
      if (nth === undefined) out.push(f);
      else if ('once' in f) out.push({ ...f, nth });
      else throw new Error(`"${raw}": only fail:<op>, migrate-fail and migrate-fail-after take @<n>`);
    };
    if (name === 'unreachable') counted({ kind: 'unreachable', raw });
    else if (name === 'slow') {
      const ms = Number(arg ?? 5000);
      if (!Number.isInteger(ms) || ms < 0) throw new Error(`"${raw}": slow takes milliseconds, e.g. slow:2000`);
      counted({ kind: 'slow', ms, raw });
    } else if (name === 'fail' || name === 'fail-once') {
      const op = arg ?? '*';
      if (!LAB_FAULT_OPS.includes(op)) throw new Error(`"${raw}": fail takes one of ${LAB_FAULT_OPS.join('|')}`);
      counted({ kind: 'fail', op, once: name === 'fail-once', raw });
    } else if (name === 'migrate-fail' || name === 'migrate-fail-once') counted({ kind: 'migrate-fail', once: name === 'migrate-fail-once', raw });
    else if (name === 'migrate-fail-after' || name === 'migrate-fail-after-once') counted({ kind: 'migrate-fail-after', once: name === 'migrate-fail-after-once', raw });
    else if (name === 'linger') counted({ kind: 'linger', raw });
    else throw new Error(`unknown lab fault "${raw}"; see "lab.faults" in the README`);
  }
  return out;
}

/** The faults of one target, checked against where they can act; throws one sentence. */
export function validateFaults(target: string, spec: string, hosts?: readonly string[]): LabFault[] {
  const faults = parseFaults(spec);
  const onVm = target.startsWith('vm:');
  if (onVm && !/^vm:[A-Za-z][A-Za-z0-9._-]{0,62}$/.test(target)) throw new Error(`"${target}" is not a VM name (vm:<name>)`);
  if (!onVm && hosts && !hosts.includes(target)) throw new Error(`${target} is not a lab host; faults go on a lab host or on vm:<name>`);
  for (const f of faults) {
    if (onVm && HOST_KINDS.has(f.kind)) throw new Error(`"${f.raw}" is a host fault; put it on a lab host, not on ${target}`);
    if (!onVm && !HOST_KINDS.has(f.kind)) throw new Error(`"${f.raw}" is a VM fault; put it on vm:<name>, not on host ${target}`);
  }
  return faults;
}

export async function setLabFault(redis: Redis, prefix: string, target: string, spec: string | null): Promise<void> {
  const keys = labKeys(prefix);
  if (spec === null || spec === '') {
    await redis.hdel(keys.faults, target);
    return;
  }
  validateFaults(target, spec);
  await redis.hset(keys.faults, target, spec);
  // Counts for "@<n>" start again from the moment the fault is set.
  const stale = (await redis.hkeys(keys.calls)).filter((k) => k.startsWith(`${target}|`));
  if (stale.length) await redis.hdel(keys.calls, ...stale);
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
