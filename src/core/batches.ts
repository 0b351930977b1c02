/**
 * Fan-out in batches: a sweep of n hosts over `lanes` parallel slots ends at the ideal
 * ⌈n/lanes⌉ rounds when every lane runs the same number of hosts. Batches of hosts (one job
 * each, hosts one after another) keep that bound with far fewer jobs than one per host: the
 * number of jobs, and what enqueuing them costs, stays near lanes × ⌈rounds/maxBatch⌉.
 */

/** Batch size for n items over `lanes` slots, at most `maxBatch` per batch, keeping ⌈n/lanes⌉ rounds within a batch's rounding. */
export function batchSize(n: number, lanes: number, maxBatch: number): number {
  if (n <= 0) return 1;
  const perLane = Math.ceil(n / Math.max(1, lanes));
  const rounds = Math.ceil(perLane / Math.max(1, maxBatch));
  return Math.max(1, Math.ceil(perLane / rounds));
}

/** Consecutive batches of `items`, sized by batchSize(). */
export function batches<T>(items: readonly T[], lanes: number, maxBatch: number): T[][] {
  const size = batchSize(items.length, lanes, maxBatch);
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
