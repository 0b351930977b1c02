/**
 * `npm run bench -- slack-fairness`: a channel flooded by other operations' output (10 cards
 * refreshed every few ms and a reply into their threads every fourth refresh), through the outbox
 * and the stand-in Web API with Slack's rate limits. Figure: from an operator's typed command in
 * that channel to its answer (the card, top-level) reaching Slack, 5 times, and the backlog the
 * flood had built by then.
 */
import { startPrivateRedis } from '../test/support/redis-server.js';
import { startSlackStandin } from '../test/support/slack-standin.js';
import { parseConfig } from '../src/config/load.js';
import { LAB_DEFAULT_YAML } from '../src/config/lab-default.js';
import { createRuntime } from '../src/runtime.js';
import { createFerry } from '../src/ferry.js';
import { startWorkers } from '../src/jobs/worker.js';
import { handleLine } from '../src/bot/commands.js';
import { inThread, type Conversation, type MessageRef } from '../src/chat/conversation.js';
import { message } from '../src/chat/messages.js';
import { silentLogger } from '../src/log.js';
import { runAsScript } from './support.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function main(): Promise<Record<string, number>> {
  const redis = await startPrivateRedis();
  const slack = await startSlackStandin();
  const env = { SLACK_BOT_TOKEN: 'xoxb-bench', SLACK_API_URL: slack.url };
  const yaml = LAB_DEFAULT_YAML.replace('latencyMs: 150', 'latencyMs: 5');
  const rt = createRuntime({ loaded: parseConfig(yaml, 'bench', env), redisUrl: redis.url, log: silentLogger(), prefix: 'bench-fair' });
  const deps = createFerry(rt, 'all', { env });
  const workers = await startWorkers(deps);
  const channel = 'C0BUSY';
  let flooding = true;
  let flood: Promise<void> = Promise.resolve();
  try {
    const others: Conversation = { surface: 'slack', channel, user: 'U0BOT' };
    const cards: MessageRef[] = [];
    for (let i = 0; i < 10; i++) cards.push((await deps.outbox.post(others, message(`operation ${i}: starting`))) as MessageRef);
    while (!(await Promise.all(cards.map((c) => deps.slackOutbox!.resolve(c)))).every(Boolean)) await sleep(50);
    let n = 0;
    flood = (async () => {
      while (flooding) {
        n++;
        const card = cards[n % cards.length]!;
        await deps.outbox.update(others, card, message(`operation ${n % cards.length}: step ${n}`));
        if (n % 4 === 0) await deps.outbox.post({ ...others, threadTs: card.ts }, message(`operation ${n % cards.length}: moved vm-${n}`));
        await sleep(5);
      }
    })();
    const answers: number[] = [];
    let backlog = 0;
    for (let i = 0; i < 5; i++) {
      await sleep(3000);
      backlog = Math.max(backlog, (await deps.slackOutbox!.backlog()).messages);
      const conv: Conversation = { surface: 'slack', channel, user: 'alice' };
      const title = `find stale ports hyp0${i + 1}`;
      const t0 = Date.now();
      await handleLine(deps, {
        text: title,
        user: 'alice',
        conv,
        channel: { id: channel },
        refuse: async (r) => {
          throw new Error(`refused: ${JSON.stringify(r)}`);
        },
        answer: async (msg) => inThread(conv, await deps.outbox.post(conv, msg)),
      });
      for (;;) {
        const c = slack.calls.find((x) => x.at >= t0 && x.status === 200 && x.method === 'chat.postMessage' && !x.body.thread_ts && String(x.body.text).includes(title));
        if (c) {
          answers.push(c.at - t0);
          break;
        }
        await sleep(10);
      }
    }
    answers.sort((a, b) => a - b);
    const figures = { medianMs: answers[2]!, maxMs: answers[4]!, floodBacklog: backlog, rateLimited: slack.rateLimited().length };
    console.log(`slack-fairness: an operator's answer in a flooded channel reached Slack in ${answers.join(', ')} ms (median ${figures.medianMs}, max ${figures.maxMs}; Slack's limit 3,000) with up to ${backlog} flood messages waiting; ${figures.rateLimited} responses 429`);
    return figures;
  } finally {
    flooding = false;
    await flood;
    await workers.close();
    await deps.close();
    await rt.close();
    await slack.close();
    await redis.close();
  }
}

runAsScript(import.meta, main);
