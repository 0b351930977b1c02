/**
 * Nobody silenced (issue 13, items 2 and 10), in the Procfile shape: `ferry web` and `ferry
 * worker` in their own processes on a private redis-server, Slack played by a stand-in.
 * - A command typed while auth.test fails (Slack's API failing at Ferry's start) was acked empty
 *   and dropped by Bolt: it must be answered, and nothing run.
 *   An @Ferry mention then is answered in its thread through the outbox, and a button click
 *   through the click's response_url (through the outbox, to the clicker alone, when Slack's
 *   hooks fail too).
 * - An @Ferry mention while Redis is away was acked and never answered: it is answered in its
 *   thread that Redis cannot be reached and nothing was started.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { fastLabYaml, uniquePrefix } from '../support/harness.js';
import { slackHttpEnv, startWebAndWorker, type FerryProcess } from '../support/processes.js';
import { startSlackStandin, type SlackStandin } from '../support/slack-standin.js';
import { buttonBody, freePort, postSigned, slashBody } from '../support/slack.js';
import { DURABLE, startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';
import { bound } from '../support/speed.js';
import { eventually } from '../support/wait.js';

let redis: PrivateRedis;
let slack: SlackStandin;
let web: FerryProcess;
let worker: FerryProcess;
let port: number;

beforeAll(async () => {
  redis = await startPrivateRedis(DURABLE);
  slack = await startSlackStandin();
  // Slack's API fails Ferry's first identity checks.
  slack.failAuthTest(5);
  port = await freePort();
  const env = slackHttpEnv({ redisUrl: redis.url, prefix: uniquePrefix('identity'), yaml: fastLabYaml(), slackUrl: slack.url, port });
  const started = startWebAndWorker(env);
  ({ web, worker } = started);
  await started.ready;
});

afterAll(async () => {
  await Promise.all([web?.stop(), worker?.stop()]);
  await slack?.close();
  await redis?.close();
});

const posts = (re: RegExp) => slack.calls.filter((c) => c.method === 'chat.postMessage' && re.test(String(c.body.text ?? '')));

function mention(text: string, ts: string): string {
  return JSON.stringify({
    token: 'legacy',
    team_id: 'T1',
    api_app_id: 'A1',
    type: 'event_callback',
    event_id: `Ev${ts.replace('.', '')}`,
    event_time: Math.floor(Date.now() / 1000),
    event: { type: 'app_mention', user: 'U0ALICE', text, ts, channel: 'C0OPS', event_ts: ts },
  });
}

it('a button click before the first successful auth.test is answered through its response_url, and nothing runs', async () => {
  // Keep auth.test failing whatever this process asked it before; the tests below count on a few failures left.
  slack.failAuthTest(1000);
  try {
    const res = await postSigned(port, buttonBody('ferry:drain-start', '1', 'trig-identity', { user: 'U0CAROL', responseUrl: `${slack.responseUrl}click-identity` }));
    expect(res.status).toBe(200);
    expect(res.ms).toBeLessThan(3000);
    const answer = await eventually(() => slack.calls.find((c) => c.method === 'response_url' && String(c.body.text ?? '').includes('auth.test')), 'the answer at the click’s response_url', 30_000);
    expect(answer.body).toMatchObject({ response_type: 'ephemeral', replace_original: false });
    expect(String(answer.body.text)).toMatch(/^Ferry cannot confirm its own Slack identity right now \(auth\.test failed: .*fatal_error.*\), so it ran nothing; try again in a minute\.$/);
    // The click's handler never ran: it would have answered Carol (a refusal or the button's outcome) through the outbox.
    expect(slack.calls.filter((c) => c.method.startsWith('chat.') && c.body.user === 'U0CAROL')).toEqual([]);
  } finally {
    slack.failAuthTest(5);
  }
});

it('a click whose response_url fails too is answered through the outbox, to the clicker alone', async () => {
  slack.failAuthTest(1000);
  slack.failResponseUrls(1000);
  try {
    const res = await postSigned(port, buttonBody('ferry:drain-start', '1', 'trig-identity-2', { user: 'U0DAVE', responseUrl: `${slack.responseUrl}click-identity-2` }));
    expect(res.status).toBe(200);
    expect(res.ms).toBeLessThan(3000);
    const answer = await eventually(() => slack.calls.find((c) => c.method === 'chat.postEphemeral' && c.body.user === 'U0DAVE'), 'the answer to the click through the outbox', 30_000);
    expect(answer.body.channel).toBe('C0OPS');
    expect(String(answer.body.text)).toMatch(/^Ferry cannot confirm its own Slack identity right now \(auth\.test failed: .*\), so it ran nothing/);
    expect(slack.calls.filter((c) => c.method === 'response_url' && c.status === 503)).not.toEqual([]);
  } finally {
    slack.failResponseUrls(0);
    slack.failAuthTest(5);
  }
});

it('an @Ferry mention before the first successful auth.test is answered in its thread (through the outbox), and nothing runs', async () => {
  const ts = `${Math.floor(Date.now() / 1000)}.000555`;
  const res = await postSigned(port, mention('<@UFERRY> find stale ports hyp04', ts), { contentType: 'application/json' });
  expect(res.status).toBe(200);
  const answer = await eventually(() => slack.calls.find((c) => c.method === 'chat.postMessage' && c.body.thread_ts === ts), 'the answer in the mention’s thread', 30_000);
  expect(String(answer.body.text)).toMatch(/^Ferry cannot confirm its own Slack identity right now \(auth\.test failed: .*\), so it ran nothing/);
  await new Promise((r) => setTimeout(r, 2000));
  expect(posts(/hyp04/)).toEqual([]);
});

it('a command typed before the first successful auth.test is answered, and nothing runs', async () => {
  const res = await postSigned(port, slashBody('find stale ports hyp01'));
  expect(res.status).toBe(200);
  expect(res.ms).toBeLessThan(3000);
  expect(JSON.parse(res.text)).toMatchObject({ response_type: 'ephemeral', text: expect.stringMatching(/^Ferry cannot confirm its own Slack identity right now \(auth\.test failed: .*fatal_error.*\), so it ran nothing; try again in a minute\.$/) });
  // Once auth.test answers, the same command runs (and the first one never did).
  await eventually(async () => {
    const again = await postSigned(port, slashBody('find stale ports hyp02'));
    return again.text === '' || !again.text.includes('auth.test failed');
  }, 'auth.test to succeed again', 30_000);
  await eventually(() => posts(/find stale ports hyp02/).length > 0, 'the second sweep’s card', 60_000);
  expect(posts(/hyp01/)).toEqual([]);
});


it('an @Ferry mention while Redis is away is answered in its thread, and nothing runs', async () => {
  await redis.stop();
  try {
    await web.waitForLine(/Ferry cannot reach its Redis/, bound(15_000));
    const ts = `${Math.floor(Date.now() / 1000)}.000777`;
    const res = await postSigned(port, mention('<@UFERRY> find stale ports hyp03', ts), { contentType: 'application/json' });
    expect(res.status).toBe(200);
    const answer = await eventually(() => slack.calls.find((c) => c.method === 'chat.postMessage' && c.body.thread_ts === ts), 'the answer in the mention’s thread', 15_000);
    expect(answer.body.channel).toBe('C0OPS');
    expect(String(answer.body.text)).toContain('Ferry cannot reach its Redis');
  } finally {
    await redis.start();
  }
  await web.waitForLine(/Redis is back after/, bound(30_000));
  // Nothing was queued behind the outage to run now.
  await new Promise((r) => setTimeout(r, 2000));
  expect(posts(/hyp03/)).toEqual([]);
});
