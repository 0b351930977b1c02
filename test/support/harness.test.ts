/**
 * The harness's transcript barrier: console posts arrive over pub/sub, so a test that reads state
 * from Redis and then the transcript could miss the last posts; sync() (which every waitFor
 * that holds runs) waits until everything published before is in.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeHarness, type Harness } from './harness.js';
import { message } from '../../src/chat/messages.js';
import type { Conversation } from '../../src/chat/conversation.js';

let h: Harness;
beforeAll(async () => {
  h = await makeHarness({ workers: false });
});
afterAll(async () => {
  await h?.close();
});

it('sync: every post published before it is in the transcript, in order', async () => {
  const conv: Conversation = { surface: 'console', session: h.session, user: 'alice' };
  const lines = Array.from({ length: 200 }, (_, i) => `line ${i}`);
  // Published one after another on the shared connection, not awaited one by one.
  await Promise.all(lines.map((l) => h.deps.outbox.post(conv, message(l))));
  await h.sync();
  expect(h.transcript().split('\n')).toEqual(lines);
});
