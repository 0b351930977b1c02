import { describe, expect, it } from 'vitest';
import { batchSize, batches } from '../../src/core/batches.js';

/** Rounds a lane runs when jobs of the given sizes are taken by `lanes` slots, biggest first. */
function roundsFor(sizes: number[], lanes: number): number {
  const load = new Array<number>(lanes).fill(0);
  for (const s of sizes) {
    const i = load.indexOf(Math.min(...load));
    load[i]! += s;
  }
  return Math.max(...load);
}

describe('batches', () => {
  it.each([
    // n, lanes, maxBatch, size
    [1, 16, 25, 1],
    [12, 16, 25, 1],
    [99, 16, 25, 7],
    [10_000, 16, 25, 25],
    [10_000, 16, 50, 49],
    [2000, 16, 25, 25],
    [0, 16, 25, 1],
  ])('%i items over %i lanes, at most %i per batch: batches of %i', (n, lanes, max, size) => {
    expect(batchSize(n, lanes, max)).toBe(size);
  });

  it.each([
    [99, 16, 25],
    [100, 16, 25],
    [10_000, 16, 25],
    [10_000, 16, 50],
    [2000, 16, 25],
    [37, 4, 5],
  ])('%i items over %i lanes (max %i): every item once, in order, and the ideal rounds kept within one batch', (n, lanes, max) => {
    const items = Array.from({ length: n }, (_, i) => i);
    const b = batches(items, lanes, max);
    expect(b.flat()).toEqual(items);
    expect(b.every((x) => x.length <= max)).toBe(true);
    const ideal = Math.ceil(n / lanes);
    const rounds = roundsFor(b.map((x) => x.length), lanes);
    expect(rounds).toBeGreaterThanOrEqual(ideal);
    // Ceilings lose at most one item per batch a lane runs.
    expect(rounds - ideal).toBeLessThanOrEqual(Math.ceil(ideal / max));
  });
});
