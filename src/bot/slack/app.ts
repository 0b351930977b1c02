/**
 * The Slack surface (Bolt): the /ferry slash command, @ferry mentions and DMs all go through
 * the same grammar; buttons go to registered actions. Ack first, always inside Slack's 3 s:
 * the listener acks before doing anything else, and real work is a job. Retried deliveries
 * and duplicate events are recognised by their ids in Redis and run once.
 */
import { App, HTTPReceiver, LogLevel, SocketModeReceiver } from '@slack/bolt';
import type { AppOptions, AuthorizeResult, Middleware, AnyMiddlewareArgs, RespondArguments } from '@slack/bolt';
import type { Ferry } from '../../ferry.js';
import { AdmissionUnavailable, handleLine, type Incoming } from '../commands.js';
import { handleClick, handleSubmit } from '../actions.js';
import { escapeText, message, type Message } from '../../chat/messages.js';
import { renderSlack } from '../render/slack.js';
import type { Conversation } from '../../chat/conversation.js';
import { inThread } from '../../chat/conversation.js';
import { resolveUserGroups } from './groups.js';
import { createWebClient } from './surface.js';
import type { Health } from '../../health.js';
import { registerHome } from './home.js';
import { guardReceiver, sameWorkspaceOnly } from './guard.js';
import { InFlight } from './in-flight.js';
import { REDIS_DOWN_SENTENCE } from '../../redis-outage.js';
import { parseEpoch, splitStamp, staleClick } from './epoch-stamp.js';


/** A Redis that has not answered the first command of a request by this time is taken as unreachable. */
const REDIS_ANSWER_MS = 1500;

/** Slack waits 3 s for a slash command's ack; Ferry acks by this time whatever is still running. */
const ACK_DEADLINE_MS = 2000;

/** An ephemeral answer that fits one response body (Block Kit limits), or undefined. */
function ackBody(msg: Message): RespondArguments | undefined {
  const r = renderSlack(msg);
  if (r.messages.length !== 1 || r.files.length) return undefined;
  const [only] = r.messages;
  return { response_type: 'ephemeral', text: only!.text, blocks: only!.blocks as never };
}

/** Redis's answer, or AdmissionUnavailable once it is later than REDIS_ANSWER_MS. */
async function inAnswerTime<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new AdmissionUnavailable(`Redis did not answer in ${REDIS_ANSWER_MS} ms`)), REDIS_ANSWER_MS)))]);
  } finally {
    clearTimeout(timer);
  }
}

export interface SlackAppOptions {
  botToken: string;
  signingSecret?: string;
  appToken?: string;
  port: number;
  slackApiUrl?: string;
  /** SLACK_APP_ID: deliveries for another app are dropped (else auth.test's app_id, when it says). */
  appId?: string;
  /** Readiness: in Socket Mode, ready only while the socket is connected. */
  health?: Health;
}

/** When Ferry's first middleware saw the request, for ack latency (ferry_slack_ack_seconds). */
const RECEIVED_AT = 'ferryReceivedAt';

/** Ids that identify one delivery across retries: event_id for events, trigger_id / action_ts for the rest. */
function deliveryId(body: Record<string, unknown>): string | undefined {
  if (typeof body.event_id === 'string') return `event:${body.event_id}`;
  const actions = body.actions as { action_ts?: string; action_id?: string }[] | undefined;
  if (actions?.[0]?.action_ts) return `action:${(body.user as { id?: string })?.id}:${actions[0].action_id}:${actions[0].action_ts}`;
  if (typeof body.trigger_id === 'string') return `trigger:${body.trigger_id}`;
  return undefined;
}

type PersonEvent = { type?: string; subtype?: string; channel?: string; channel_type?: string; user?: string; bot_id?: string; ts?: string; thread_ts?: string };

/** A mention of Ferry or a DM to it, written by a person (not a bot, not an edit): one Ferry answers in its thread. */
function mentionOrDm(ev: PersonEvent | undefined): ev is PersonEvent & { channel: string; user: string } {
  if (!ev?.channel || !ev.user || ev.bot_id || ev.subtype) return false;
  return ev.type === 'app_mention' || (ev.type === 'message' && ev.channel_type === 'im');
}

/** Context key: auth.test failed for this request (its error). */
const AUTH_FAILED = 'ferryAuthFailed';

export function authFailedSentence(why: string): string {
  return `Ferry cannot confirm its own Slack identity right now (auth.test failed: ${escapeText(why.slice(0, 200))}), so it ran nothing; try again in a minute.`;
}

export function createSlackApp(deps: Ferry, opts: SlackAppOptions): InstanceType<typeof App> {
  const { rt } = deps;
  const log = rt.log.child({ part: 'slack-app' });
  // One auth.test per process, on first use, retried after a failure. Bolt's own single-token
  // mode with lazy verification calls auth.test on every incoming request.
  const authClient = createWebClient(opts.botToken, opts.slackApiUrl);
  let identity: Promise<AuthorizeResult & { appId?: string }> | undefined;
  const authorize = (): Promise<AuthorizeResult & { appId?: string }> => {
    identity ??= authClient.auth
      .test()
      .then((r) => ({
        botToken: opts.botToken,
        botId: r.bot_id,
        botUserId: r.user_id,
        teamId: r.team_id,
        enterpriseId: r.enterprise_id || undefined,
        appId: opts.appId ?? ((r as { app_id?: string }).app_id || undefined),
      }))
      .catch((e: unknown) => {
        identity = undefined;
        throw e;
      });
    return identity;
  };
  // Bolt acks and drops a request whose authorize throws: a command typed while auth.test fails
  // (Slack's API down at Ferry's start) would vanish without a word. Instead the request goes on,
  // marked, and identityKnown below answers it with a sentence and runs nothing.
  const authorizeOrMark = async (): Promise<AuthorizeResult> => {
    try {
      return await authorize();
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      log.warn({ err: why }, 'auth.test failed: a Slack request is answered that nothing was run');
      return { botToken: opts.botToken, [AUTH_FAILED]: why };
    }
  };
  const common: Partial<AppOptions> = {
    authorize: authorizeOrMark,
    logLevel: LogLevel.WARN,
    clientOptions: opts.slackApiUrl ? { slackApiUrl: opts.slackApiUrl.replace(/\/?$/, '/') } : undefined,
  };
  // No custom routes on the Slack port: health and metrics live on HEALTH_PORT (src/health.ts).
  const receiver = opts.appToken
    ? undefined
    : new HTTPReceiver({
        signingSecret: opts.signingSecret!,
        endpoints: '/slack/events',
        processBeforeResponse: false,
        unhandledRequestTimeoutMillis: 2900,
      });
  // Slack requests not yet acked: follow-up work waits for them (in-flight.ts).
  const inFlight = new InFlight();
  if (receiver) guardReceiver(receiver, log, { inFlight });
  const acksFirst = () => inFlight.idle(ACK_DEADLINE_MS);
  let socket: SocketModeReceiver | undefined;
  if (opts.appToken) {
    // SLACK_API_URL points every Web API client elsewhere, the Socket Mode client's too: it asks
    // apps.connections.open for the socket's URL (a fresh object: the client writes into it).
    const clientOptions = opts.slackApiUrl ? { slackApiUrl: opts.slackApiUrl.replace(/\/?$/, '/') } : undefined;
    socket = new SocketModeReceiver({ appToken: opts.appToken, logLevel: LogLevel.WARN, installerOptions: { clientOptions } });
    let state = 'connecting';
    for (const s of ['connecting', 'connected', 'reconnecting', 'disconnecting', 'disconnected']) socket.client.on(s, () => (state = s));
    // A dropped socket emits no state until the client's reconnect delay (5 s) has passed: its
    // close is the moment readiness must stop saying connected (the same test the client makes).
    const client = socket.client;
    client.on('close', () => {
      if (!client.websocket?.isActive()) state = 'disconnected';
    });
    opts.health?.add('socketMode', () => {
      if (state !== 'connected') throw new Error(`Slack Socket Mode is ${state}`);
      return 'connected';
    });
  }
  const app = new App({ ...common, receiver: socket ?? receiver });

  // Ferry's own identity unknown (auth.test failing): the workspace check cannot be made, so
  // nothing runs, and the sender hears so: in the ack (a command), through response_url (a
  // click; through the outbox when that fails too), or in the mention's thread through the
  // outbox, which retries until Slack answers.
  app.use(async (args) => {
    const failed = (args.context as Record<string, unknown>)[AUTH_FAILED];
    if (typeof failed !== 'string') return args.next();
    const body = args.body as unknown as Record<string, unknown>;
    const maybeAck = (args as { ack?: (body?: RespondArguments) => Promise<void> }).ack;
    const text = authFailedSentence(failed);
    if (typeof body.command === 'string') return maybeAck?.({ response_type: 'ephemeral', text });
    await maybeAck?.();
    const respond = (args as { respond?: (m: RespondArguments) => Promise<unknown> }).respond;
    if (respond && typeof body.response_url === 'string') {
      try {
        await respond({ response_type: 'ephemeral', replace_original: false, text });
      } catch (e) {
        // Slack's hooks failing with its API (an outage): the outbox retries until Slack takes it.
        const b = body as { user?: { id?: string }; channel?: { id?: string } };
        log.warn({ err: String(e) }, 'could not answer a click at its response_url; the outbox will');
        if (b.channel?.id && b.user?.id) {
          await deps.outbox.ephemeral({ surface: 'slack', channel: b.channel.id, user: b.user.id }, message(text)).catch((q: unknown) => log.warn({ err: String(q) }, 'could not queue the answer to a click'));
        }
      }
      return;
    }
    const ev = body.event as PersonEvent | undefined;
    if (mentionOrDm(ev)) {
      await deps.outbox.post({ surface: 'slack', channel: ev.channel, threadTs: ev.thread_ts ?? ev.ts, user: ev.user }, message(text)).catch((e: unknown) => log.warn({ err: String(e) }, 'could not queue the answer to a mention'));
    }
  });

  // Another workspace's (or app's) ids: acked and dropped before anything else looks at them.
  app.use(sameWorkspaceOnly(authorize, log));

  /** True for the first delivery of this id, false for a repeat; while the answer is pending, rejects when Redis does not answer in time. */
  const firstDelivery = async (id: string, answerPending = true): Promise<boolean> => {
    const set = rt.redis.set(rt.key('slack', 'delivery', id), '1', 'EX', 3600, 'NX');
    return (await (answerPending ? inAnswerTime(set) : set)) === 'OK';
  };

  // A mention (or DM) has no ack body to answer in, and the outbox lives in Redis: while Redis is
  // away the answer goes straight to Slack, in the mention's thread. Slack retries a delivery and
  // a user may repeat it: one answer per user and channel per 30 s, kept in this process.
  const answeredDown = new Map<string, number>();
  const answerWithoutRedis = async (ev: PersonEvent | undefined): Promise<void> => {
    if (!mentionOrDm(ev)) return;
    const key = `${ev.user}:${ev.channel}`;
    const now = Date.now();
    if ((answeredDown.get(key) ?? 0) > now - 30_000) return;
    answeredDown.set(key, now);
    for (const [k, at] of answeredDown) if (at <= now - 30_000) answeredDown.delete(k);
    try {
      await authClient.chat.postMessage({ channel: ev.channel, thread_ts: ev.thread_ts ?? ev.ts, text: REDIS_DOWN_SENTENCE, unfurl_links: false });
    } catch (e) {
      log.warn({ channel: ev.channel, err: e instanceof Error ? e.message : String(e) }, 'could not answer a mention while Redis is away');
    }
  };

  // Duplicate and retried deliveries: the first one wins, the others are acked and dropped.
  const dedupe: Middleware<AnyMiddlewareArgs> = async (args) => {
    args.context[RECEIVED_AT] = performance.now();
    const body = args.body as unknown as Record<string, unknown>;
    const id = deliveryId(body);
    const maybeAck = (args as { ack?: (body?: RespondArguments) => Promise<void> }).ack;
    // Redis away: nothing can run (the command would wait on it past Slack's 3 s). Say so in the ack.
    const unreachable = async () => {
      log.info({ id }, 'a Slack request arrived while Redis cannot be reached; answered with that');
      if (maybeAck) await maybeAck(typeof body.command === 'string' ? { response_type: 'ephemeral', text: REDIS_DOWN_SENTENCE } : undefined);
      if (body.type === 'event_callback') await answerWithoutRedis(body.event as PersonEvent);
    };
    if (rt.redisOutage.down) return unreachable();
    // A slash command asks this beside its other checks, after the refusals that need no Redis (handleLine).
    if (id && typeof body.command !== 'string') {
      const fresh = await firstDelivery(id).catch(() => 'unreachable' as const);
      if (fresh === 'unreachable') return unreachable();
      if (!fresh) {
        log.info({ id, retryNum: (args.context as { retryNum?: number }).retryNum }, 'duplicate Slack delivery ignored');
        if (maybeAck) await maybeAck();
        return;
      }
    }
    await args.next();
  };
  app.use(dedupe);

  const run = async (text: string, user: string, conv: Conversation, channelType?: string, replies: Partial<Pick<Incoming, 'refuse' | 'answer' | 'reply' | 'accepted' | 'fresh'>> = {}) => {
    const groupMembers = await inAnswerTime(resolveUserGroups(rt, deps.slack?.client));
    await handleLine(deps, {
      text,
      user,
      conv,
      channel: { id: conv.surface === 'slack' ? conv.channel : 'console', type: channelType as 'im' | undefined },
      groupMembers,
      refuse: (r) => deps.outbox.ephemeral(conv, message(r.sentence)),
      answer: async (msg) => inThread(conv, await deps.outbox.post(conv, msg)),
      ...replies,
    });
  };

  const ackSeen = (context: Record<string, unknown>, kind: string) => {
    const t0 = context[RECEIVED_AT];
    if (typeof t0 === 'number') rt.metrics.ackSeconds.labels(kind).observe((performance.now() - t0) / 1000);
  };

  /**
   * The slash command is acked as soon as Ferry knows its answer: a refusal, help or another
   * immediate answer goes in the ack body itself (ephemeral: no Web API call, no send budget,
   * and it works in channels Ferry is not a member of); a command that starts work is acked
   * empty the moment it is accepted, before anything is enqueued. Whatever comes after the ack
   * that only the user should see goes to response_url. The work after an empty ack (enqueue,
   * card) waits until every Slack request this process has received is acked (in-flight.ts), so
   * in a burst of commands no ack queues behind another command's follow-up work.
   */
  app.command('/ferry', async ({ ack, respond, command, context, body }) => {
    const conv: Conversation = { surface: 'slack', channel: command.channel_id, user: command.user_id, teamId: command.team_id };
    let acked: Promise<void> | undefined;
    const ackWith = (body?: RespondArguments): Promise<void> =>
      (acked ??= ack(body).then(() => ackSeen(context, 'command')));
    // Slack gives up after 3 s: a slow step (Redis failing over) never holds the ack past this, counted from receipt.
    const t0 = context[RECEIVED_AT];
    const left = ACK_DEADLINE_MS - (typeof t0 === 'number' ? performance.now() - t0 : 0);
    const deadline = setTimeout(() => void ackWith().catch(() => undefined), Math.max(0, left));
    const privately = async (msg: Message): Promise<void> => {
      const body = ackBody(msg);
      if (!acked && body) return ackWith(body);
      await ackWith();
      try {
        if (!body) throw new Error('too long for one response');
        await respond({ ...body, replace_original: false });
      } catch {
        await deps.outbox.ephemeral(conv, msg);
      }
    };
    const id = deliveryId(body as unknown as Record<string, unknown>);
    try {
      await run(command.text ?? '', command.user_id, conv, command.channel_name === 'directmessage' ? 'im' : undefined, {
        // Asked after the answer (a refusal's bookkeeping), it may take as long as Redis needs.
        fresh: id ? () => firstDelivery(id, !acked) : undefined,
        refuse: (r) => privately(message(r.sentence)),
        reply: privately,
        accepted: async () => {
          await ackWith();
          await acksFirst();
        },
        answer: async (msg) => {
          await ackWith();
          await acksFirst();
          return inThread(conv, await deps.outbox.post(conv, msg));
        },
      });
    } catch (e) {
      if (!(e instanceof AdmissionUnavailable)) throw e;
      // Redis away: nothing can run (the command would wait on it past Slack's 3 s). Say so in the ack.
      log.info({ err: e.message }, 'a slash command arrived while Redis cannot be reached; answered with that');
      await privately(message(REDIS_DOWN_SENTENCE));
    } finally {
      clearTimeout(deadline);
      await ackWith();
    }
  });

  // A thread Ferry started is known by its outbox ref (bot/slack/outbox.ts), whatever ts Slack gave it.
  const canonical = async (channel: string, ts: string | undefined): Promise<string | undefined> => (deps.slackOutbox ? deps.slackOutbox.canonical(channel, ts) : ts);

  // A mention has no response URL: its refusal is a reply in the mention's thread (as public as
  // the mention; no ephemeral call, which Slack paces per workspace and which fails to reach a
  // user where the message is gone).
  app.event('app_mention', async ({ event }) => {
    if (!event.user) return;
    const threadTs = await canonical(event.channel, event.thread_ts);
    const conv: Conversation = { surface: 'slack', channel: event.channel, threadTs, user: event.user };
    const underMention: Conversation = { ...conv, threadTs: threadTs ?? event.ts };
    await run(event.text, event.user, conv, undefined, { refuse: async (r) => void (await deps.outbox.post(underMention, message(r.sentence))) });
  });

  // A DM is already private: refusals and answers are plain messages in it.
  app.message(async ({ message: msg }) => {
    const m = msg as { channel_type?: string; subtype?: string; bot_id?: string; user?: string; text?: string; channel: string; thread_ts?: string };
    if (m.channel_type !== 'im' || m.subtype || m.bot_id || !m.user || !m.text) return;
    const conv: Conversation = { surface: 'slack', channel: m.channel, threadTs: await canonical(m.channel, m.thread_ts), user: m.user };
    await run(m.text, m.user, conv, 'im', { refuse: async (r) => void (await deps.outbox.post(conv, message(r.sentence))) });
  });

  app.action(/^ferry:/, async ({ ack, body, action, client, context }) => {
    await ack();
    ackSeen(context, 'action');
    const b = body as unknown as { user: { id: string }; channel?: { id: string }; message?: { ts: string; thread_ts?: string }; trigger_id?: string };
    const a = action as { action_id: string; value?: string };
    const channel = b.channel?.id;
    if (!channel) return;
    const conv: Conversation = { surface: 'slack', channel, user: b.user.id, threadTs: await canonical(channel, b.message?.thread_ts ?? b.message?.ts) };
    const clicked = b.message ? await canonical(channel, b.message.ts) : undefined;
    // A button from before Redis lost its data may carry an id that now names another job.
    const stamp = splitStamp(a.value ?? '');
    const stale = staleClick(stamp.tag, parseEpoch(await rt.redis.get(rt.key('epoch'))));
    if (stale) {
      log.warn({ action: a.action_id, user: b.user.id, value: a.value }, 'a click from before Redis lost its data was refused');
      await deps.outbox.ephemeral(conv, message(stale.sentence));
      return;
    }
    try {
      // The click stands for a command: parsed, permitted (user, group, channel) and gated like a typed line.
      await handleClick(deps, a.action_id, {
        channel,
        user: b.user.id,
        conv,
        message: clicked ? { channel, ts: clicked } : undefined,
        value: stamp.value,
        groupMembers: await resolveUserGroups(rt, deps.slack?.client),
        refuse: (r) => deps.outbox.ephemeral(conv, message(r.sentence)),
        openModal: b.trigger_id
          ? async (view) => {
              await client.views.open({ trigger_id: b.trigger_id!, view: view as never });
            }
          : undefined,
      });
    } catch (e) {
      // A click that fails must not fail silently: the clicker hears it, the log has the detail.
      log.error({ action: a.action_id, user: b.user.id, err: e instanceof Error ? e.stack : String(e) }, 'button handler failed');
      await deps.outbox.ephemeral(conv, message(`Ferry could not finish that click: ${e instanceof Error ? e.message : String(e)}. The thread shows what did happen; try again or type the command.`));
    }
  });

  app.view(/^ferry:/, async ({ ack, body, view, context }) => {
    await ack();
    ackSeen(context, 'view');
    const meta = JSON.parse(view.private_metadata || '{}') as { channel?: string; threadTs?: string; value?: string };
    if (!meta.channel) return;
    const values: Record<string, string> = {};
    for (const block of Object.values(view.state.values)) {
      for (const [k, v] of Object.entries(block)) values[k] = (v as { value?: string }).value ?? '';
    }
    const conv: Conversation = { surface: 'slack', channel: meta.channel, threadTs: meta.threadTs, user: body.user.id };
    try {
      await handleSubmit(
        deps,
        view.callback_id,
        { channel: meta.channel, user: body.user.id, conv, value: meta.value ?? '', groupMembers: await resolveUserGroups(rt, deps.slack?.client), refuse: (r) => deps.outbox.ephemeral(conv, message(r.sentence)) },
        values,
      );
    } catch (e) {
      log.error({ view: view.callback_id, user: body.user.id, err: e instanceof Error ? e.stack : String(e) }, 'form handler failed');
      await deps.outbox.ephemeral(conv, message(`Ferry could not finish that form: ${e instanceof Error ? e.message : String(e)}. The thread shows what did happen; try again or type the command.`));
    }
  });

  // App Home: publish on app_home_opened; refresh open tabs when operations or windows change.
  registerHome(app, deps);

  app.error(async (err) => {
    log.error({ err: err.message }, 'Slack listener error');
  });
  return app;
}
