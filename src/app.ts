/** Wires a process: queues, operations and the outbox (Slack when a token is set, console always). */
import type { Runtime } from './runtime.js';
import type { Deps } from './jobs/context.js';
import { Queues } from './jobs/queues.js';
import { Operations } from './jobs/operations.js';
import { Outbox } from './bot/outbox.js';
import { assertFence } from './jobs/fence.js';
import { ConsoleSurface } from './bot/console/surface.js';
import { SlackSurface, createWebClient } from './bot/slack/surface.js';
import { SlackBudget } from './bot/slack/budget.js';
import './bot/handlers/index.js';

export interface AppDeps extends Deps {
  slack?: SlackSurface;
  close(): Promise<void>;
}

export function createDeps(rt: Runtime, env: NodeJS.ProcessEnv = process.env): AppDeps {
  const queues = new Queues(rt);
  const ops = new Operations(rt);
  const slack = env.SLACK_BOT_TOKEN
    ? new SlackSurface(createWebClient(env.SLACK_BOT_TOKEN, env.SLACK_API_URL), new SlackBudget(rt.redis, rt.prefix), rt.log.child({ part: 'slack' }))
    : undefined;
  let warned = false;
  const outbox = new Outbox({ slack, console: new ConsoleSurface(rt.redis, rt.prefix) }, () => {
    if (!warned) rt.log.error('an operation belongs to a Slack conversation but this process has no SLACK_BOT_TOKEN; its messages are dropped (results stay in Redis)');
    warned = true;
  }, () => assertFence(rt.redis));
  return {
    rt,
    queues,
    ops,
    outbox,
    slack,
    async close() {
      await queues.close();
    },
  };
}
