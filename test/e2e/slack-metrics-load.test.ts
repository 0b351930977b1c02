/**
 * Scrapes do not slow the acks (issue 13, item 9: 300 concurrent /metrics requests pushed an ack
 * to 2 s). `ferry web` in its own process, metrics on HEALTH_PORT, signed slash commands on the
 * Slack port while 300 scrapes at a time keep arriving.
 */
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { uniquePrefix } from '../support/harness.js';
import { startFerry, type FerryProcess } from '../support/processes.js';
import { startSlackStandin, type SlackStandin } from '../support/slack-standin.js';
import { freePort, postSigned, SIGNING_SECRET, slashBody } from '../support/slack.js';
import { timeBound } from '../support/speed.js';

const SCRAPES = 300;
const COMMANDS = 20;

let slack: SlackStandin;
let web: FerryProcess;
let port: number;
let healthPort: number;

beforeAll(async () => {
  slack = await startSlackStandin();
  port = await freePort();
  healthPort = await freePort();
  web = startFerry('web', {
    REDIS_URL: inject('redisUrl'),
    FERRY_PREFIX: uniquePrefix('scrape'),
    PORT: String(port),
    HEALTH_PORT: String(healthPort),
    SLACK_BOT_TOKEN: 'xoxb-test',
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_API_URL: slack.url,
  });
  await web.waitForLine(/Slack app listening/, 60_000);
});

afterAll(async () => {
  await web?.stop();
  await slack?.close();
});

const scrape = () => fetch(`http://127.0.0.1:${healthPort}/metrics`).then(async (r) => ({ status: r.status, text: await r.text() }));

it(`${SCRAPES} concurrent /metrics scrapes, again and again: signed commands are still acked, the median within 300 ms and the slowest within 1 s (it was 2-3.4 s)`, async () => {
  // Warm: Ferry has met Slack, the scrape path has run once.
  expect((await postSigned(port, slashBody('hosts hyp01', { channel: 'C0WARM', responseUrl: `${slack.responseUrl}warm` }))).status).toBe(200);
  expect((await scrape()).text).toMatch(/ferry_queue_jobs/);

  let scraping = true;
  let scrapes = 0;
  const statuses = new Set<number>();
  // Waves of SCRAPES at once, each wave as soon as the last is answered, until the commands are done.
  const load = (async () => {
    while (scraping) {
      for (const r of await Promise.all(Array.from({ length: SCRAPES }, scrape))) statuses.add(r.status);
      scrapes += SCRAPES;
    }
  })();
  const acks: number[] = [];
  try {
    // Commands arrive while a wave is in flight (the first wave starts in the same tick).
    for (let i = 0; i < COMMANDS; i++) {
      const res = await postSigned(port, slashBody('hosts hyp02', { user: `U0OP${i}`, responseUrl: `${slack.responseUrl}op${i}` }));
      expect(res.status).toBe(200);
      acks.push(res.ms);
    }
  } finally {
    scraping = false;
    await load;
  }
  expect([...statuses]).toEqual([200]);
  const worst = Math.round(Math.max(...acks));
  const median = Math.round(acks.sort((a, b) => a - b)[acks.length >> 1]!);
  console.log(`metrics load: worst ack ${worst} ms, median ${median} ms over ${COMMANDS} commands during ${scrapes} scrapes`);
  // The slowest of 20 shares two cores with this file's own 300 clients: its bound is Slack's
  // 3 s with room, still far below what the unshared rendering did (2-3.4 s idle).
  const typical = timeBound(300);
  const slowest = timeBound(1000);
  expect(median, `the median ack under scrapes (${typical.why})`).toBeLessThan(typical.ms);
  expect(worst, `the worst ack under scrapes (${slowest.why})`).toBeLessThan(slowest.ms);
});
