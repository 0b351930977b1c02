/**
 * Removal of many stale ports: per-port results go to the card, and the thread gets a few
 * milestone messages (each with its ports' lines) and the summary, not one post per port.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { renderText } from '../../src/bot/render/text.js';
import { FINISHED } from '../../src/jobs/operations.js';

describe('remove stale ports across the fleet', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  it('reports every port, in at most four milestone posts plus the summary', async () => {
    await h.run('remove stale ports hyp01..hyp99');
    const requestId = await h.waitFor(async () => (await h.rt.redis.get(h.rt.key('approval', 'seq'))) ?? undefined, 'the approval request');
    const plan = h.transcript().match(/Remove (\d+) stale ports · request/);
    const total = Number(plan?.[1]);
    expect(total).toBeGreaterThan(20);
    const postsBefore = h.events.filter((e) => e.kind === 'post').length;
    await h.run(`approve ${requestId}`, 'bob');
    const op = await h.waitFor(async () => {
      const [o] = await h.deps.ops.recent(1);
      return o && o.kind === 'remove-stale-ports' && FINISHED.includes(o.status) ? o : undefined;
    }, 'the removal to finish', 60_000);
    await h.waitFor(async () => h.transcript().includes(`Removal finished (request ${requestId}, job ${op.id})`), 'the summary');
    const posts = h.events.slice(0).filter((e) => e.kind === 'post').slice(postsBefore).map((e) => renderText(e.message));
    const portPosts = posts.filter((p) => /Port \d+ of \d+/.test(p));
    expect(portPosts.length).toBeGreaterThan(0);
    expect(portPosts.length).toBeLessThanOrEqual(4);
    // Every port's line is in the thread, once.
    for (let n = 1; n <= total; n++) expect(portPosts.join('\n').match(new RegExp(`Port ${n} of ${total}[: ]`, 'g'))).toHaveLength(1);
    expect(Object.keys(await h.deps.ops.results(op.id))).toHaveLength(total);
  });
});
