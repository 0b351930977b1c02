/**
 * `npm run bench -- slack-outage`: Slack away (connection refused, then HTTP 503) for
 * FERRY_BENCH_OUTAGE_S seconds (default 60) while sweeps in several channels run to the end;
 * then Slack is back. Figures: messages queued in the outbox, the outage, how long the backlog
 * took to drain once Slack answered, and deliveries per message (duplicates and losses counted).
 * Ferry in process (runtime, workers, outbox senders) on a private Redis; the Web API is the
 * stand-in, which enforces Slack's rate limits.
 */
import { startPrivateRedis } from '../test/support/redis-server.js';
import { startSlackStandin } from '../test/support/slack-standin.js';
import { parseConfig } from '../src/config/load.js';
import { LAB_DEFAULT_YAML } from '../src/config/lab-default.js';
import { createRuntime } from '../src/runtime.js';
import { createFerry } from '../src/ferry.js';
import { startWorkers } from '../src/jobs/worker.js';
import { handleLine } from '../src/bot/commands.js';
import { inThread, type Conversation } from '../src/chat/conversation.js';
import { silentLogger } from '../src/log.js';
import { FINISHED } from '../src/jobs/operations.js';
import { OUTBOX_EVENT } from '../src/bot/slack/outbox.js';
import { runAsScript } from './support.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function main(): Promise<Record<string, number>> {
  const outageMs = Number(process.env.FERRY_BENCH_OUTAGE_S ?? 60) * 1000;
  const redis = await startPrivateRedis();
  const slack = await startSlackStandin();
  const env = { SLACK_BOT_TOKEN: 'xoxb-bench', SLACK_API_URL: slack.url };
  const yaml = LAB_DEFAULT_YAML.replace('latencyMs: 150', 'latencyMs: 5').replace('migrationMs: 3000', 'migrationMs: 100');
  const rt = createRuntime({ loaded: parseConfig(yaml, 'bench', env), redisUrl: redis.url, log: silentLogger(), prefix: 'bench-outage' });
  const deps = createFerry(rt, 'all', { env });
  const workers = await startWorkers(deps);
  const outbox = deps.slackOutbox!;
  try {
    const channels = ['C0A', 'C0B', 'C0C', 'C0D'];
    const t0 = Date.now();
    let end = slack.outage('refuse');
    for (let i = 0; i < 12; i++) {
      const channel = channels[i % channels.length]!;
      const conv: Conversation = { surface: 'slack', channel, user: 'alice' };
      const from = i * 4 + 1;
      await handleLine(deps, {
        text: `find stale ports hyp${String(from).padStart(2, '0')}..hyp${String(from + 3).padStart(2, '0')}`,
        user: 'alice',
        conv,
        channel: { id: channel },
        refuse: async (r) => {
          throw new Error(`refused: ${typeof r === 'string' ? r : JSON.stringify(r)}`);
        },
        answer: async (msg) => inThread(conv, await deps.outbox.post(conv, msg)),
      });
    }
    for (;;) {
      const ops = await deps.ops.recent(20);
      if (ops.length >= 12 && ops.every((o) => FINISHED.includes(o.status))) break;
      await sleep(50);
    }
    const workDoneMs = Date.now() - t0;
    await sleep(Math.max(0, outageMs / 2 - (Date.now() - t0)));
    await end();
    end = slack.outage('503');
    await sleep(Math.max(0, outageMs - (Date.now() - t0)));
    await end();
    const back = Date.now();
    const outage = back - t0;
    for (;;) {
      const b = await outbox.backlog();
      if (b.lanes === 0 && b.messages === 0) break;
      await sleep(20);
    }
    const drainMs = Date.now() - back;
    const queued = Number(await rt.redis.get('bench-outage:outbox:seq'));
    const per = new Map<string, number>();
    for (const m of slack.posted) if (m.metadata?.event_type === OUTBOX_EVENT) per.set(String(m.metadata.event_payload?.id), (per.get(String(m.metadata.event_payload?.id)) ?? 0) + 1);
    const duplicates = [...per.values()].filter((n) => n > 1).length;
    let lost = 0;
    for (let id = 1; id <= queued; id++) if (!per.has(String(id))) lost++;
    const updates = slack.calls.filter((c) => c.method === 'chat.update' && c.status === 200).length;
    const figures = { messages: queued, channels: channels.length, outageMs: outage, workDoneDuringOutageMs: workDoneMs, drainMs, duplicates, lost, cardUpdates: updates, rateLimited: slack.rateLimited().length };
    console.log(
      `slack-outage: ${queued} messages queued in ${channels.length} channels while Slack was away ${Math.round(outage / 1000)} s (the 12 sweeps ended ${(workDoneMs / 1000).toFixed(1)} s in); ` +
        `backlog drained ${(drainMs / 1000).toFixed(1)} s after Slack answered; ${duplicates} duplicated, ${lost} lost; ${updates} card updates; ${figures.rateLimited} calls answered 429`,
    );
    return figures;
  } finally {
    await workers.close();
    await deps.close();
    await rt.close();
    await slack.close();
    await redis.close();
  }
}

runAsScript(import.meta, main);
