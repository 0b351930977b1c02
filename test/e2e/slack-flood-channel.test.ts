/**
 * One user floods a channel, in the shape it was found (issue 13, item 4): `ferry web` and
 * `ferry worker` as separate processes, signed slash commands to the real receiver, a stand-in
 * Web API with Slack's rate limits, and 2,000 commands in about 20 s from a user in no Ferry
 * group (dry runs, open to everyone, so the ones within the rate start operations whose cards
 * share the channel). Then an operator's dry run in the same channel: acked within Slack's 3 s,
 * and its card with the plan in Slack within 3 s (found: no plan after 150 s).
 * The one-refusal-sentence rule of the flood itself: test/e2e/slack-flood.test.ts.
 */
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { fastLabYaml, makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { slackHttpEnv, startWebAndWorker, type FerryProcess } from '../support/processes.js';
import { startSlackStandin, type SlackStandin, type StandinCall } from '../support/slack-standin.js';
import { freePort, postSigned, slashBody } from '../support/slack.js';
import { pMap } from '../../src/core/pmap.js';
import { timeBound } from '../support/speed.js';

/** As found: 2,000 commands over about 20 s. The flood alone takes ~20 s of this file's run. */
const FLOOD_COMMANDS = 2000;
const FLOOD_MS = 20_000;
const CHANNEL = 'C0FLOOD';

let slack: SlackStandin;
let web: FerryProcess;
let worker: FerryProcess;
let port: number;
let h: Harness;

beforeAll(async () => {
  slack = await startSlackStandin();
  const prefix = uniquePrefix('flood');
  port = await freePort();
  const yaml = fastLabYaml();
  const env = slackHttpEnv({ redisUrl: inject('redisUrl'), prefix, yaml, slackUrl: slack.url, port });
  // For waiting only: no workers, no Slack of its own.
  h = await makeHarness({ yaml, prefix, workers: false });
  const started = startWebAndWorker(env);
  ({ web, worker } = started);
  await started.ready;
});

afterAll(async () => {
  await Promise.all([web?.stop(), worker?.stop()]);
  await slack?.close();
  await h?.close();
});

const logs = () => `web:\n${web.output().slice(-3000)}\nworker:\n${worker.output().slice(-3000)}`;

it(`${FLOOD_COMMANDS} commands from one user in ~20 s: an operator's dry run in that channel is acked and its plan is in Slack within 3 s`, async () => {
  // Ferry has met Slack (auth.test) before the flood, as in production.
  expect((await postSigned(port, slashBody('hosts hyp01', { channel: 'C0WARM', responseUrl: `${slack.responseUrl}warm` }))).status).toBe(200);

  // Paced at FLOOD_COMMANDS / FLOOD_MS; if the machine sends slower, as fast as it can (measured).
  const t0 = Date.now();
  const acks = await pMap(Array.from({ length: FLOOD_COMMANDS }, (_, i) => i), 32, async (i) => {
    const due = t0 + (i * FLOOD_MS) / FLOOD_COMMANDS - Date.now();
    if (due > 0) await new Promise((r) => setTimeout(r, due));
    return postSigned(port, slashBody(`drain hyp${String(5 + (i % 10)).padStart(2, '0')} dry-run`, { user: 'U0MALLORY', channel: CHANNEL, responseUrl: `${slack.responseUrl}flood${i}` }));
  });
  const floodMs = Date.now() - t0;
  expect(acks.every((a) => a.status === 200)).toBe(true);

  const sent = Date.now();
  const res = await postSigned(port, slashBody('drain hyp03 dry-run', { user: 'U0ALICE', channel: CHANNEL, responseUrl: `${slack.responseUrl}operator` }));
  expect(res.status).toBe(200);
  const ack = timeBound(3000);
  expect(res.ms, `Slack's ack limit (${ack.why})`).toBeLessThan(ack.ms);
  expect(res.text).not.toMatch(/ignores your commands/);

  // The operator's card with the plan (its verdict: this lab's hyp03 may or may not be drainable), as Slack received it.
  const hasPlan = (c: StandinCall) => c.at >= sent && c.status === 200 && !c.error && c.body.channel === CHANNEL && /^drain hyp03 dry-run: hyp03 can(not)? be drained/.test(String(c.body.text));
  const plan = await h.waitFor(async () => slack.calls.find(hasPlan), "the operator's plan in Slack", 60_000).catch((e: unknown) => {
    throw new Error(`${String(e)}\n${slack.calls.filter((c) => c.at >= sent).slice(0, 20).map((c) => `${c.method} ${c.status} ${String(c.body.text).slice(0, 80)}`).join('\n')}\n${logs()}`);
  });
  const answered = plan.at - sent;
  console.log(`flood: operator answered in ${answered} ms after ${FLOOD_COMMANDS} commands (sent in ${floodMs} ms; ack ${Math.round(res.ms)} ms)`);
  const bound = timeBound(3000);
  expect(answered, `the operator's plan within 3 s (${bound.why})`).toBeLessThan(bound.ms);
});
