/**
 * The composition root: the one place that says what a Ferry process is made of. Every
 * workflow's job side (jobs, cards, decisions, give-up hooks, approval handlers, start-up
 * tasks, patch-window hooks) and chat side (commands, buttons, forms, gates) is listed here,
 * and every mode (console, web, worker, all) builds the same complete set, so a worker runs
 * every job any process enqueues and a click meets the same checks everywhere. Nothing
 * registers itself on import.
 */
import type { Runtime } from './runtime.js';
import type { Deps } from './jobs/context.js';
import { Queues } from './jobs/queues.js';
import { Operations } from './jobs/operations.js';
import { wireJobs, type Workflow } from './jobs/wiring.js';
import { SurfaceRouter } from './chat/surface-router.js';
import { configRedactor } from './chat/redact.js';
import { assertFence } from './jobs/fence.js';
import { ConsoleSurface } from './bot/console/surface.js';
import { tableFileLines } from './jobs/table-file.js';
import { SlackSurface, createOutboxClient, createWebClient } from './bot/slack/surface.js';
import { OutboxSender, SlackOutbox, outboxOptions } from './bot/slack/outbox.js';
import { SlackBudget } from './bot/slack/budget.js';
import { buildRouter, type ChatDeps, type ChatWorkflow } from './bot/router.js';
// Job side
import { cardsWorkflow } from './jobs/cards.js';
import { inventoryViewWorkflow } from './jobs/workflows/inventory-view.js';
import { findStalePortsWorkflow } from './jobs/workflows/find-stale-ports.js';
import { removeStalePortsWorkflow } from './jobs/workflows/remove-stale-ports.js';
import { approvalsWorkflow } from './approvals/service.js';
import { drainWorkflow } from './jobs/workflows/drain.js';
import { restoreWorkflow } from './jobs/workflows/restore.js';
import { migrateWorkflow } from './jobs/workflows/migrate.js';
import { plannedMovesWorkflow } from './jobs/drain/control.js';
import { patchWindowsWorkflow } from './jobs/patch/scheduler.js';
import { rollingRunWorkflow } from './jobs/patch/rolling.js';
import { hostCycleWorkflow } from './jobs/patch/cycle.js';
import { appHomeWorkflow } from './bot/slack/home.js';
// Chat side
import { helpChat } from './bot/handlers/help.js';
import { inventoryChat } from './bot/handlers/inventory.js';
import { jobsChat } from './bot/handlers/jobs.js';
import { removeStalePortsChat } from './bot/handlers/remove-stale-ports.js';
import { approvalsChat } from './bot/handlers/approvals.js';
import { auditChat } from './bot/handlers/audit.js';
import { pauseChat } from './bot/handlers/pause.js';
import { patchWindowsChat } from './bot/handlers/patch-windows.js';
import { drainChat } from './bot/handlers/drain.js';

export type Mode = 'console' | 'web' | 'worker' | 'all';

/** Every workflow's job side, in every mode. */
export const WORKFLOWS: readonly Workflow[] = [
  cardsWorkflow,
  inventoryViewWorkflow,
  findStalePortsWorkflow,
  removeStalePortsWorkflow,
  approvalsWorkflow,
  drainWorkflow,
  restoreWorkflow,
  migrateWorkflow,
  plannedMovesWorkflow,
  patchWindowsWorkflow,
  rollingRunWorkflow,
  hostCycleWorkflow,
  appHomeWorkflow,
];

/** Every workflow's chat side, in every mode. */
export const CHAT: readonly ChatWorkflow[] = [helpChat, inventoryChat, jobsChat, removeStalePortsChat, approvalsChat, auditChat, pauseChat, patchWindowsChat, drainChat];

export interface Ferry extends ChatDeps {
  slack?: SlackSurface;
  /** Durable Slack output (bot/slack/outbox.ts): what the SurfaceRouter sends Slack messages through. */
  slackOutbox?: SlackOutbox;
  /** This process's outbox senders (started with the process, stopped by close()). */
  slackSender?: OutboxSender;
  close(): Promise<void>;
}

export interface FerryOptions {
  env?: NodeJS.ProcessEnv;
  /** Tests: replace a workflow's descriptor (e.g. a host cycle that breaks on purpose); the set stays complete. */
  adjust?: (workflows: readonly Workflow[], chat: readonly ChatWorkflow[]) => { workflows: readonly Workflow[]; chat: readonly ChatWorkflow[] };
}

/**
 * Build a Ferry process's parts on a runtime. `mode` only decides what main.ts starts on top
 * (workers, the Slack app, the console); the wiring is the same in all of them.
 */
export function createFerry(rt: Runtime, _mode: Mode, opts: FerryOptions = {}): Ferry {
  const env = opts.env ?? process.env;
  const parts = opts.adjust ? opts.adjust(WORKFLOWS, CHAT) : { workflows: WORKFLOWS, chat: CHAT };
  const queues = new Queues(rt);
  const ops = new Operations(rt);
  const slack = env.SLACK_BOT_TOKEN
    ? new SlackSurface(createWebClient(env.SLACK_BOT_TOKEN, env.SLACK_API_URL), new SlackBudget(rt.redis, rt.prefix), rt.log.child({ part: 'slack' }), rt.metrics, (file) => tableFileLines(rt.redis, file))
    : undefined;
  const slackOutbox = env.SLACK_BOT_TOKEN ? new SlackOutbox(rt.redis, rt.prefix, outboxOptions(env)) : undefined;
  // Every process with a token sends what any process queued; work only ever waits on Redis.
  const slackSender =
    slackOutbox && env.SLACK_BOT_TOKEN
      ? new OutboxSender(slackOutbox, rt.newConnection(), createOutboxClient(env.SLACK_BOT_TOKEN, env.SLACK_API_URL, Math.min(10_000, slackOutbox.opts.leaseMs / 3)), slack!, rt.log.child({ part: 'slack-outbox' }), rt.metrics)
      : undefined;
  slackSender?.start();
  let warned = false;
  const outbox = new SurfaceRouter({ slack: slackOutbox, console: new ConsoleSurface(rt.redis, rt.prefix) }, () => {
    if (!warned) rt.log.error('an operation belongs to a Slack conversation but this process has no SLACK_BOT_TOKEN; its messages are dropped (results stay in Redis)');
    warned = true;
  }, () => assertFence(rt.redis), configRedactor(rt.config));
  const deps: Deps = { rt, queues, ops, outbox, wiring: wireJobs(parts.workflows) };
  return {
    ...deps,
    router: buildRouter(parts.chat),
    slack,
    slackOutbox,
    slackSender,
    async close() {
      await slackSender?.stop();
      await queues.close();
    },
  };
}
