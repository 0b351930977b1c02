/**
 * Ferry behind its real HTTP receiver for Slack tests: a harness (real Redis and workers) and
 * the Bolt app listening on a free loopback port, to which tests post signed requests.
 */
import { makeHarness, type Harness } from './harness.js';
import { SIGNING_SECRET, SLACK_API_URL, freePort } from './slack.js';
import { createSlackApp } from '../../src/bot/slack/app.js';

export interface SlackFerry {
  h: Harness;
  port: number;
  close(): Promise<void>;
}

/** `slackApiUrl`: where the Web API is played (nock's SLACK_API_URL unless a stand-in's). */
export async function startSlackFerry(opts: Parameters<typeof makeHarness>[0] & { slackApiUrl?: string } = {}): Promise<SlackFerry> {
  const slackApiUrl = opts.slackApiUrl ?? SLACK_API_URL;
  const env = { SLACK_BOT_TOKEN: 'xoxb-test', SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_API_URL: slackApiUrl, ...opts.env };
  const h = await makeHarness({ ...opts, env });
  const port = await freePort();
  const app = createSlackApp(h.deps, { botToken: env.SLACK_BOT_TOKEN, signingSecret: SIGNING_SECRET, port, slackApiUrl });
  try {
    await app.start(port);
  } catch (e) {
    await h.close();
    throw e;
  }
  return {
    h,
    port,
    async close() {
      await app.stop();
      await h.close();
    },
  };
}
