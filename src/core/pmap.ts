/** Map with at most `limit` promises in flight; results keep input order. */
export async function pMap<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const runners = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  });
  await Promise.all(runners);
  return out;
}

export async function pSettle<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<({ ok: true; value: R } | { ok: false; error: unknown })[]> {
  return pMap(items, limit, async (item) => {
    try {
      return { ok: true as const, value: await fn(item) };
    } catch (error) {
      return { ok: false as const, error };
    }
  });
}
