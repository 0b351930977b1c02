/**
 * A sweep's card is edited a fixed number of times whatever the sweep's size or length (issue
 * 10: Slack calls per sweep the same at 10,000 hosts as at 99): the first result, half way, the
 * end. A sweep of several seconds (20 hosts, 2 at a time, 500 ms per lab call) through the real
 * receiver, Slack played by nock.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Harness } from '../support/harness.js';
import { fastLabYaml } from '../support/harness.js';
import { callText, mockSlackApi, postSigned, slashBody } from '../support/slack.js';
import { startSlackFerry, type SlackFerry } from '../support/slack-receiver.js';

let ferry: SlackFerry;
let h: Harness;
let slack: ReturnType<typeof mockSlackApi>;

beforeAll(async () => {
  slack = mockSlackApi();
  ferry = await startSlackFerry({ yaml: fastLabYaml('limits:\n  sweepConcurrency: 2\n', { latencyMs: 500, migrationMs: 100 }) });
  h = ferry.h;
});

afterAll(async () => {
  await ferry?.close();
  slack.done();
});

it('a sweep lasting seconds edits its card at most three times: the first result, half way, the end', async () => {
  const t0 = Date.now();
  expect((await postSigned(ferry.port, slashBody('find stale ports hyp01..hyp20'))).status).toBe(200);
  const op = await h.waitFor(async () => {
    const [o] = await h.deps.ops.recent(1);
    return o && o.title === 'find stale ports hyp01..hyp20' && o.status === 'succeeded' ? o : undefined;
  }, 'the sweep to finish', 60_000);
  const since = () => slack.calls.filter((c) => c.at >= t0);
  await h.waitFor(async () => since().some((c) => (c.method === 'chat.update' || c.method === 'chat.postMessage') && /20\/20 hosts · \d+ stale ports?\n/.test(callText(c))), 'the final card');
  await h.waitFor(async () => since().filter((c) => c.method === 'chat.postMessage').length >= 2, 'the summary');
  const updates = since().filter((c) => c.method === 'chat.update');
  const durationMs = (op.finishedAt ?? Date.now()) - (op.startedAt ?? t0);
  expect(updates.length, `${updates.length} card edits over a ${durationMs} ms sweep`).toBeLessThanOrEqual(3);
  expect(since().filter((c) => c.method === 'chat.postMessage')).toHaveLength(2);
});
