/** The Slack side of the outbox: Retry-After honoured across the shared budget, errors logged with their job. */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import nock from 'nock';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { SlackSurface, createWebClient } from '../../src/bot/slack/surface.js';
import { SlackBudget } from '../../src/bot/slack/budget.js';
import { withLogContext } from '../../src/log-context.js';
import { message } from '../../src/chat/messages.js';
import { uniquePrefix } from '../support/harness.js';

const API = 'http://slack.test/api/';
const conv = { surface: 'slack' as const, channel: 'C0OPS', user: 'U0ALICE' };

describe('SlackSurface', () => {
  let redis: Redis;
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level: 'info' },
    new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
        cb();
      },
    }),
  );
  beforeAll(() => {
    redis = new Redis(inject('redisUrl'));
    nock.enableNetConnect(/127\.0\.0\.1|localhost/);
  });
  afterEach(() => nock.cleanAll());
  afterAll(() => redis.quit());

  it('waits out a 429 Retry-After, then delivers once', async () => {
    const surface = new SlackSurface(createWebClient('xoxb-t', API), new SlackBudget(redis, uniquePrefix('budget')), log);
    const seen: number[] = [];
    nock('http://slack.test')
      .post('/api/chat.postMessage')
      .reply(() => {
        seen.push(Date.now());
        return [429, { ok: false, error: 'ratelimited' }, { 'retry-after': '1' }];
      })
      .post('/api/chat.postMessage')
      .reply(() => {
        seen.push(Date.now());
        return [200, { ok: true, channel: 'C0OPS', ts: '1.000100' }];
      });
    const ref = await surface.post(conv, message('hello'));
    expect(ref).toEqual({ channel: 'C0OPS', ts: '1.000100' });
    expect(seen).toHaveLength(2);
    expect(seen[1]! - seen[0]!).toBeGreaterThanOrEqual(950);
  });

  // Issue 13 item 5: chat.update (burst 5) honoured Retry-After 1 s and 2 s as 0 ms and 5 s as 200 ms.
  it.each([1, 2, 5])('Retry-After %i s is a floor for a method with a burst (chat.update)', async (seconds) => {
    const surface = new SlackSurface(createWebClient('xoxb-t', API), new SlackBudget(redis, uniquePrefix('budget')), log);
    const seen: number[] = [];
    nock('http://slack.test')
      .post('/api/chat.update')
      .reply(() => {
        seen.push(Date.now());
        return [429, { ok: false, error: 'ratelimited' }, { 'retry-after': String(seconds) }];
      })
      .post('/api/chat.update')
      .reply(() => {
        seen.push(Date.now());
        return [200, { ok: true, channel: 'C0OPS', ts: '1.000100' }];
      });
    await surface.update(conv, { channel: 'C0OPS', ts: '1.000100' }, message('hello'));
    expect(seen).toHaveLength(2);
    expect(seen[1]! - seen[0]!).toBeGreaterThanOrEqual(seconds * 1000 - 50);
  });

  it('a Web API error is logged with the job and operation, and the caller gets null', async () => {
    const surface = new SlackSurface(createWebClient('xoxb-t', API), new SlackBudget(redis, uniquePrefix('budget')), log);
    nock('http://slack.test').post('/api/chat.postMessage').reply(200, { ok: false, error: 'not_in_channel' });
    const ref = await withLogContext({ jobId: 'op-41', job: 'sweep', opId: 41 }, () => surface.post(conv, message('hello')));
    expect(ref).toBeNull();
    const line = lines.find((l) => l.slackError === 'not_in_channel');
    expect(line).toMatchObject({ method: 'chat.postMessage', channel: 'C0OPS', jobId: 'op-41', opId: 41, msg: 'Slack chat.postMessage failed: not_in_channel' });
    expect(JSON.stringify(line)).not.toContain('xoxb-t');
  });

  it('two senders share one budget: posts to a channel are spaced a second apart', async () => {
    const prefix = uniquePrefix('budget');
    const a = new SlackSurface(createWebClient('xoxb-t', API), new SlackBudget(redis, prefix), log);
    const b = new SlackSurface(createWebClient('xoxb-t', API), new SlackBudget(redis, prefix), log);
    const at: number[] = [];
    nock('http://slack.test')
      .post('/api/chat.postMessage')
      .times(4)
      .reply(() => {
        at.push(Date.now());
        return [200, { ok: true, channel: 'C0OPS', ts: `${at.length}.0001` }];
      });
    await Promise.all([a.post(conv, message('1')), b.post(conv, message('2')), a.post(conv, message('3')), b.post(conv, message('4'))]);
    at.sort((x, y) => x - y);
    for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(900);
  });
});
