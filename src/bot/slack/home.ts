/**
 * The App Home tab: running operations, approvals waiting for this user, hosts in maintenance
 * (open drain ledgers: Ferry's own record, so no hypervisor is called to draw a tab) and
 * upcoming patch windows. Published with views.publish when the user opens the tab, and again
 * when something it shows changes (operations change status, windows are recorded, cancelled,
 * start or end) for everyone who opened it in the last week.
 *
 * Within Slack's limits: views.publish goes through the shared budget (src/bot/slack/budget.ts),
 * and each user's view is published at most once per HOME_DEBOUNCE_MS however many changes
 * arrive; a change inside that interval leaves one trailing publish (a deduplicated delayed job
 * on the 'cards' queue), so the last state is always shown.
 */
import type { WebClient } from '@slack/web-api';
import type { App } from '@slack/bolt';
import type { Redis } from 'ioredis';
import type { Deps } from '../../jobs/context.js';
import type { Workflow } from '../../jobs/wiring.js';
import { context, divider, header, message, plural, section, who, type Block, type Message } from '../../chat/messages.js';
import { renderSlackSingle } from '../render/slack.js';
import { SlackBudget } from './budget.js';
import { WindowStore } from '../../jobs/patch/store.js';
import { formatWindowTimes, windowEnd } from '../../core/windows.js';
import { compressNames } from '../../core/selectors.js';
import { ApprovalStore } from '../../approvals/store.js';
import { isMemberOfAny, membership, type GroupMembers } from '../../core/permissions.js';
import { isOpen, type Ledger } from '../../jobs/drain/ledger.js';
import { readRun, RUN_KIND } from '../../jobs/patch/rolling.js';

export const HOME_DEBOUNCE_MS = 5000;
const VIEWER_TTL_MS = 7 * 86_400_000;
/** Block Kit allows 100 blocks in a home view; keep well inside with room for the tables. */
const MAX_ROWS = 15;

export async function buildHome(deps: Deps, user: string, groupMembers: GroupMembers = {}): Promise<Message> {
  const { rt } = deps;
  const now = rt.clock.now();
  const blocks: Block[] = [header('Ferry')];

  const active = await deps.ops.active();
  blocks.push(section(`*Running operations* (${active.length})`));
  blocks.push(
    active.length
      ? { type: 'table', columns: ['Job', 'What', 'State', 'By'], rows: active.slice(0, MAX_ROWS).map((o) => [String(o.id), o.title.slice(0, 60), o.status, who(o.requester)]) }
      : context('Nothing running.'),
  );

  // Approvals this user may give: the approvals store's pending requests, and rolling runs waiting.
  const mine: string[][] = [];
  const members = membership(rt.config, groupMembers);
  const approvals = new ApprovalStore(rt);
  for (const id of await approvals.due(Number.MAX_SAFE_INTEGER, 100)) {
    const rec = await approvals.get(id);
    const r = rec?.request;
    if (!r || r.status !== 'pending' || r.expiresAt <= now || r.requester === user || !isMemberOfAny(members, user, r.approvers)) continue;
    mine.push([`request ${r.id}`, r.summary.slice(0, 80), `approve ${r.id}`]);
  }
  for (const o of active.filter((x) => x.kind === RUN_KIND && x.status === 'waiting')) {
    const s = await readRun(deps, o.id);
    const a = s?.approval;
    if (a && a.status === 'pending' && a.requester !== user && isMemberOfAny(members, user, a.approvers)) mine.push([`job ${o.id}`, a.summary.slice(0, 80), `approve run ${o.id}`]);
  }
  blocks.push(divider(), section(`*Waiting for your approval* (${mine.length})`));
  blocks.push(mine.length ? { type: 'table', columns: ['Request', 'What', 'Command'], rows: mine.slice(0, MAX_ROWS) } : context('Nothing waits for you.'));

  // Hosts Ferry has in maintenance: open drain ledgers.
  const hosts = rt.inventory.hosts;
  const raws = hosts.length ? await rt.redis.mget(hosts.map((h) => rt.key('ledger', h))) : [];
  const open = raws.filter((x): x is string => x !== null).map((x) => JSON.parse(x) as Ledger).filter((l) => isOpen(l));
  blocks.push(divider(), section(`*Hosts in maintenance* (${open.length})`));
  blocks.push(
    open.length
      ? { type: 'table', columns: ['Host', 'Since', 'Drain', 'VMs away'], rows: open.slice(0, MAX_ROWS).map((l) => [l.host, new Date(l.createdAt).toISOString().slice(0, 16).replace('T', ' ') + ' UTC', `job ${l.opId}`, String(l.vms.length)]) }
      : context('No host is in maintenance by Ferry.'),
  );

  const windows = (await new WindowStore(rt).list({ sinceMs: now })).filter((w) => w.status === 'scheduled' || w.status === 'running');
  blocks.push(divider(), section(`*Upcoming patch windows* (${windows.length})`));
  blocks.push(
    windows.length
      ? {
          type: 'table',
          columns: ['Window', 'Hosts', 'When', 'State'],
          rows: windows.slice(0, MAX_ROWS).map((w) => [w.id, compressNames(w.hosts, 4), formatWindowTimes(w.startMs, windowEnd(w), w.zone), `${w.status}${w.rolling ? ' · rolling' : ''}`]),
        }
      : context('No patch window is scheduled.'),
  );
  blocks.push(context(`${plural(active.length, 'operation')} running · updated ${new Date(now).toISOString().slice(11, 16)} UTC`));
  return message('Ferry', ...blocks);
}

/** A home view: the same blocks a message would carry, as renderSlackSingle keeps them inside the limits. */
export function homeView(msg: Message): { type: 'home'; blocks: unknown[] } {
  return { type: 'home', blocks: renderSlackSingle(msg).blocks };
}

// ---------------------------------------------------------------------------------------
// Publishing

function viewersKey(deps: Deps): string {
  return deps.rt.key('home', 'viewers');
}

function slackClientOf(deps: Deps): WebClient | undefined {
  return (deps as Deps & { slack?: { client: WebClient } }).slack?.client;
}

/**
 * Publish `user`'s home now if their debounce slot is free, else leave one trailing publish.
 * Returns whether a views.publish call was made.
 */
export async function publishHome(deps: Deps, user: string, opts: { client?: WebClient; force?: boolean } = {}): Promise<boolean> {
  const client = opts.client ?? slackClientOf(deps);
  if (!client) return false;
  const redis: Redis = deps.rt.redis;
  const lock = deps.rt.key('home', user, 'lock');
  const got = await redis.set(lock, '1', 'PX', HOME_DEBOUNCE_MS, 'NX');
  if (!got && !opts.force) {
    const ttl = Math.max(50, await redis.pttl(lock));
    const slot = Math.floor((Date.now() + ttl) / HOME_DEBOUNCE_MS);
    await deps.queues.cards.add('home-publish', { user }, { jobId: `home-${user}-${slot}`, delay: ttl, removeOnComplete: true, removeOnFail: 50 }).catch(() => undefined);
    return false;
  }
  if (!got) await redis.set(lock, '1', 'PX', HOME_DEBOUNCE_MS);
  const view = homeView(await buildHome(deps, user));
  await new SlackBudget(redis, deps.rt.prefix).acquire('views.publish');
  try {
    await client.views.publish({ user_id: user, view: view as never });
    return true;
  } catch (e) {
    deps.rt.log.warn({ user, err: e }, 'views.publish failed');
    return false;
  }
}

/** app_home_opened: remember the viewer (for refreshes) and publish at once. */
export async function homeOpened(deps: Deps, user: string, client?: WebClient): Promise<void> {
  await deps.rt.redis.zadd(viewersKey(deps), deps.rt.clock.now(), user);
  await publishHome(deps, user, { client, force: true });
}

/** Something on the tab changed: refresh every recent viewer (each debounced on their own). */
export async function refreshHomes(deps: Deps): Promise<number> {
  if (!slackClientOf(deps)) return 0;
  const since = deps.rt.clock.now() - VIEWER_TTL_MS;
  await deps.rt.redis.zremrangebyscore(viewersKey(deps), 0, since);
  const users = await deps.rt.redis.zrange(viewersKey(deps), 0, -1);
  let n = 0;
  for (const u of users) if (await publishHome(deps, u)) n++;
  return n;
}


/** Queue one refresh for everyone (deduplicated per second across processes). */
export async function requestHomeRefresh(deps: Deps): Promise<void> {
  if (!slackClientOf(deps)) return;
  await deps.queues.cards.add('home-refresh', {}, { jobId: `home-refresh-${Math.floor(Date.now() / 1000)}`, delay: 250, removeOnComplete: true, removeOnFail: 50 }).catch(() => undefined);
}

/** The tab's jobs run in whichever process works the cards queue (the worker, in web + worker deployments). */
export const appHomeWorkflow: Workflow = {
  name: 'app-home',
  jobs: {
    'home-publish': { queue: 'cards', handler: async (deps, job) => publishHome(deps, String((job.data as { user: string }).user)) },
    'home-refresh': { queue: 'cards', handler: async (deps) => refreshHomes(deps) },
  },
  windowsChanged: (deps) => void requestHomeRefresh(deps),
};

/**
 * Wire the tab into a Bolt app: the app_home_opened listener, and a subscription to operation
 * status changes (Operations.patch publishes them) that refreshes open tabs.
 */
export function registerHome(app: App, deps: Deps): { close(): Promise<void> } {
  app.event('app_home_opened', async ({ event, client }) => {
    if (event.tab && event.tab !== 'home') return;
    await homeOpened(deps, event.user, client);
  });
  const sub = deps.rt.newConnection();
  void sub.subscribe(deps.rt.key('op-events')).catch(() => undefined);
  sub.on('message', () => void requestHomeRefresh(deps));
  return { close: async () => void (await sub.quit().catch(() => undefined)) };
}
