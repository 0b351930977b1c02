/**
 * Durable Slack output (issue 13, item 2): every post, card update and ephemeral Ferry says in
 * Slack is written to a Redis outbox first and delivered by senders that run in every process
 * with a Slack token (web and worker alike). Work never waits on Slack: post() returns a ref
 * ("o<id>") the moment the message is queued; threads and card updates use it, and the outbox
 * puts Slack's ts in its place when Slack has answered (and maps Slack's ts back for clicks and
 * typed replies, canonical()).
 *
 * What it promises, with Slack answering 503, refusing connections or rate limiting:
 *   - in order per conversation (one lane per channel + thread, top-level posts one per channel +
 *     requester, so one user's backlog never delays another's answer; a thread's lane waits for its
 *     head post), retried with backoff until delivered or expired (FERRY_SLACK_OUTBOX_TTL_MS);
 *   - exactly once: a lane is claimed with a token and a lease (outbox-scripts.ts); a sender
 *     that died or lost its answer mid-post leaves the message marked as tried, and the next
 *     sender first looks for it in the channel (every post carries its outbox id as message
 *     metadata) before posting again;
 *   - card updates coalesce to the latest state (a post not yet tried just takes the new body);
 *   - fair: ephemerals and top-level posts go before thread replies, and those before card
 *     updates; the longest-waiting lane goes first; the budget is taken only when a call can go
 *     now, so no conversation books a channel's budget ahead of another.
 * The atomic commands are src/lua/outbox-*.lua (enqueue, update, claim, done, retry), on Redis's
 * clock. Keys under `<prefix>:outbox`: seq (ids), m:<id> (a queued message), lane:<lane> (FIFO of
 * ids per channel + thread, or per user for ephemerals), u:<ch>:<ts> (the newest body for a posted
 * message), ready:<hi|mid|lo> (due lanes by time), claim:<lane> (a sender's token, with a lease),
 * wait:<id> (lanes waiting for post <id>'s ts), ref:<id> / rev:<ch>:<ts> (outbox ref <-> Slack's
 * ts), pause / fails (Slack unreachable), w:<write id> (the ids one enqueue gave, for its replay).
 * With Sentinel, enqueues and card updates return only once a replica has them (redis-confirm.ts).
 */
import { randomUUID } from 'node:crypto';
import { ErrorCode, type WebClient } from '@slack/web-api';
import type { Redis } from 'ioredis';
import type { Logger } from '../../log.js';
import type { Message } from '../../chat/messages.js';
import type { Conversation, MessageRef, Surface } from '../../chat/conversation.js';
import { epochTag, parseEpoch, stampButtons } from './epoch-stamp.js';
import { renderSlack, renderSlackSingle, type SlackRendering } from '../render/slack.js';
import { PLANS } from './budget.js';
import { runScript } from '../../redis-scripts.js';
import { confirmedWrite } from '../../redis-confirm.js';
import type { SlackSurface } from './surface.js';
import type { Metrics } from '../../metrics.js';
import { logContext, type LogContext } from '../../log-context.js';

export interface OutboxOptions {
  /** A sender's hold on a lane; a sender that died is replaced after this. */
  leaseMs: number;
  /** How long a message is worth delivering. */
  ttlMs: number;
  /** Parallel sends per process. */
  concurrency: number;
  /** Slack unreachable: first pause and its cap (every sender waits it out). */
  basePauseMs: number;
  maxPauseMs: number;
  /** How long Slack's ts ↔ outbox ref mapping is kept (threads are answered into for days). */
  refTtlMs: number;
}

export function outboxOptions(env: NodeJS.ProcessEnv = process.env): OutboxOptions {
  const num = (k: string, d: number) => {
    const v = Number(env[k]);
    return Number.isFinite(v) && v > 0 ? v : d;
  };
  return {
    leaseMs: num('FERRY_SLACK_OUTBOX_LEASE_MS', 30_000),
    ttlMs: num('FERRY_SLACK_OUTBOX_TTL_MS', 24 * 3600_000),
    concurrency: num('FERRY_SLACK_OUTBOX_CONCURRENCY', 4),
    basePauseMs: 250,
    maxPauseMs: num('FERRY_SLACK_OUTBOX_MAX_PAUSE_MS', 5000),
    refTtlMs: 30 * 24 * 3600_000,
  };
}

/** Slack's metadata event type on every post: how a retry finds out the post already went. */
export const OUTBOX_EVENT = 'ferry_outbox';

type Kind = 'post' | 'ephemeral' | 'file' | 'update';
interface Meta {
  kind: Kind;
  channel: string;
  /** Thread: Slack's ts or "o<id>"; absent for top-level. */
  thread?: string;
  user?: string;
  /** Log context of the caller (job, operation). */
  ctx?: LogContext;
}
interface PostBody {
  text: string;
  blocks?: unknown[];
}
type FileBody = SlackRendering['files'][number];

const PLAN_JSON = JSON.stringify(
  Object.fromEntries(Object.entries(PLANS).map(([m, p]) => [m, { i: p.intervalMs, b: p.burst, c: p.perChannel }])),
);

const isRef = (ts: string | undefined): ts is string => Boolean(ts && /^o\d+$/.test(ts));

/** The enqueue side: what workflows call (through the SurfaceRouter). */
export class SlackOutbox implements Surface {
  private readonly wakers = new Set<() => void>();

  constructor(
    private readonly redis: Redis,
    readonly prefix: string,
    readonly opts: OutboxOptions = outboxOptions(),
    private readonly now: () => number = Date.now,
  ) {}

  private key(...parts: string[]): string {
    return [this.prefix, 'outbox', ...parts].join(':');
  }

  /** Senders in this process hear of new work at once (others poll). */
  onEnqueue(wake: () => void): () => void {
    this.wakers.add(wake);
    return () => this.wakers.delete(wake);
  }

  private wake(): void {
    for (const w of this.wakers) w();
  }

  /**
   * Confirmed on the replica (redis-confirm.ts): a message a Sentinel failover lost would never be
   * said (a drain's summary, a cancel's answer). Made again until confirmed; the write id keeps a
   * first run that did reach the new primary from queuing the messages twice.
   */
  private async enqueue(lane: string, klass: 'hi' | 'mid', waitFor: string, items: { meta: Meta; body: unknown }[]): Promise<number[]> {
    const args = items.map((i) => `${JSON.stringify(i.meta)}\n${JSON.stringify(i.body)}`);
    const wid = randomUUID();
    const ids = (await confirmedWrite(this.redis, `a Slack message for ${lane}`, () => runScript(this.redis, 'outbox-enqueue', [], [this.prefix, lane, klass, waitFor, String(this.opts.ttlMs), wid, ...args]))) as number[];
    this.wake();
    return ids.map(Number);
  }

  private channelOf(conv: Conversation): string {
    if (conv.surface !== 'slack') throw new Error('the Slack outbox got a console conversation');
    return conv.channel;
  }

  async post(conv: Conversation, msg: Message): Promise<MessageRef> {
    const channel = this.channelOf(conv);
    const rendered = renderSlack(msg);
    const thread = conv.threadTs;
    const ctx = logContext();
    // A thread is one operation's; top-level posts get a lane per requester, so one user's
    // backlog of cards (a flood of dry runs) never queues in front of another user's answer.
    const lane = thread ? `p:${channel}:${thread}` : `p:${channel}::${conv.user}`;
    const ids = await this.enqueue(
      lane,
      thread ? 'mid' : 'hi',
      isRef(thread) ? thread.slice(1) : '',
      rendered.messages.map((m) => ({ meta: { kind: 'post', channel, ...(thread ? { thread } : {}), ctx }, body: { text: m.text, blocks: m.blocks } satisfies PostBody })),
    );
    const ref = { channel, ts: `o${ids[0]}` };
    if (rendered.files.length) {
      const fileThread = thread ?? ref.ts;
      await this.enqueue(
        `p:${channel}:${fileThread}`,
        'mid',
        isRef(fileThread) ? fileThread.slice(1) : '',
        rendered.files.map((f) => ({ meta: { kind: 'file', channel, thread: fileThread, ctx }, body: f satisfies FileBody })),
      );
    }
    return ref;
  }

  async update(_conv: Conversation, ref: MessageRef, msg: Message): Promise<void> {
    const p = renderSlackSingle(msg);
    // Confirmed like a post (a card's last state lost would show a finished job running); setting
    // the newest body again is harmless.
    const args = [this.prefix, ref.channel, ref.ts, JSON.stringify({ text: p.text, blocks: p.blocks } satisfies PostBody), String(this.opts.ttlMs)];
    await confirmedWrite(this.redis, `the card ${ref.ts}`, () => runScript(this.redis, 'outbox-update', [], args));
    this.wake();
  }

  async ephemeral(conv: Conversation, msg: Message): Promise<void> {
    const channel = this.channelOf(conv);
    const p = renderSlackSingle(msg);
    await this.enqueue(`e:${channel}:${conv.user}`, 'hi', '', [
      { meta: { kind: 'ephemeral', channel, user: conv.user, ...(conv.threadTs ? { thread: conv.threadTs } : {}), ctx: logContext() }, body: { text: p.text, blocks: p.blocks } satisfies PostBody },
    ]);
  }

  /** Slack's ts for a ref (null while it is still on its way, or when Slack refused it); other ts as they are. */
  async resolve(ref: MessageRef): Promise<MessageRef | null> {
    if (!isRef(ref.ts)) return ref;
    const got = await this.redis.get(this.key('ref', ref.ts.slice(1)));
    if (!got) return null;
    const [channel, ts] = got.split('|') as [string, string];
    return ts === '!' ? null : { channel, ts };
  }

  /** The ts Ferry knows a Slack message by: its outbox ref when Ferry posted it, else Slack's own. */
  async canonical(channel: string, ts: string | undefined): Promise<string | undefined> {
    if (!ts || isRef(ts)) return ts;
    return (await this.redis.get(this.key('rev', channel, ts))) ?? ts;
  }

  /** Messages and lanes still waiting (the benchmark and tests read this). */
  async backlog(): Promise<{ lanes: number; messages: number }> {
    const [hi, mid, lo] = await Promise.all(['hi', 'mid', 'lo'].map((c) => this.redis.zcard(this.key('ready', c))));
    let messages = 0;
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', this.key('m', '*'), 'COUNT', 500);
      cursor = next;
      messages += keys.length;
    } while (cursor !== '0');
    return { lanes: hi! + mid! + lo!, messages };
  }
}

interface Claimed {
  lane: string;
  klass: string;
  id: string;
  meta: Meta;
  body: string;
  tried: string;
  ver: string;
  threadRef: string;
  expired: boolean;
  target: string;
}

/**
 * The system error code under a request error: web-api 8 calls fetch, whose TypeError('fetch failed')
 * carries the socket's error (ECONNREFUSED…) as its cause.
 */
function requestErrorCode(e: unknown): string | undefined {
  const original = (e as { original?: { code?: string; cause?: { code?: string } } }).original;
  return original?.code ?? original?.cause?.code;
}

/** Errors where Slack certainly did not take the call (nothing to look for before retrying). */
function neverArrived(e: unknown): boolean {
  const err = e as { code?: string; statusCode?: number };
  if (err.code === ErrorCode.HTTPError) return true;
  if (err.code === ErrorCode.RequestError) return ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'].includes(requestErrorCode(e) ?? '');
  return false;
}

/** Platform errors worth another try; the rest (channel_not_found, invalid_blocks…) are final. */
const TRANSIENT = new Set(['internal_error', 'fatal_error', 'service_unavailable', 'request_timeout', 'ratelimited', 'team_added_to_org']);

/**
 * The sending side: `concurrency` loops per process claim due lanes and deliver their heads.
 * Nothing here is awaited by work; stop() lets a send in flight finish.
 */
export class OutboxSender {
  private running = false;
  private loops: Promise<void>[] = [];
  private sleepers = new Set<() => void>();
  private unsubscribe?: () => void;
  /** Deliveries by kind (metrics and the benchmark). */
  readonly delivered = new Map<string, number>();
  private downSince: number | undefined;
  private epoch: { tag: string; at: number } | undefined;

  constructor(
    private readonly outbox: SlackOutbox,
    private readonly redis: Redis,
    private readonly client: WebClient,
    /** File uploads (streamed CSV tables). */
    private readonly files: Pick<SlackSurface, 'upload'>,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
    private readonly now: () => number = Date.now,
  ) {}

  /** A queued body with its buttons stamped with the epoch of the Redis it came from (epoch-stamp.ts). */
  private async stamped(body: string): Promise<PostBody> {
    const b = JSON.parse(body) as PostBody;
    return b.blocks ? { ...b, blocks: stampButtons(b.blocks, await this.epochTag()) } : b;
  }

  /** The current epoch's tag for button values (read at most every 2 s; '' when there is none yet). */
  private async epochTag(): Promise<string> {
    const t = this.now();
    if (!this.epoch || t - this.epoch.at > 2000) {
      const e = parseEpoch(await this.redis.get(`${this.outbox.prefix}:epoch`));
      this.epoch = { tag: e ? epochTag(e) : '', at: t };
    }
    return this.epoch.tag;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.unsubscribe = this.outbox.onEnqueue(() => this.wakeAll());
    for (let i = 0; i < this.outbox.opts.concurrency; i++) this.loops.push(this.loop());
  }

  async stop(): Promise<void> {
    this.running = false;
    this.unsubscribe?.();
    this.wakeAll();
    await Promise.allSettled(this.loops);
    this.loops = [];
  }

  private wakeAll(): void {
    for (const s of [...this.sleepers]) s();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.sleepers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }

  private async loop(): Promise<void> {
    while (this.running) {
      let wait: number;
      try {
        wait = await this.once();
      } catch (e) {
        // Redis away: the outbox is in Redis, so there is nothing to send until it is back.
        this.log.debug({ err: e instanceof Error ? e.message : String(e) }, 'Slack outbox could not claim');
        wait = 1000;
      }
      if (wait > 0 && this.running) await this.sleep(Math.min(wait, 500));
    }
  }

  /** Claim and deliver one head; the ms to sleep before the next try (0: go on at once). */
  async once(): Promise<number> {
    const { prefix, opts } = this.outbox;
    // The pid tells whose claim it is (logs, and tests that kill the sender mid-post).
    const token = `${process.pid}:${randomUUID()}`;
    const res = (await runScript(this.redis, 'outbox-claim', [], [prefix, String(opts.leaseMs), token, '64', PLAN_JSON])) as (string | number)[];
    if (res[0] === '') {
      const w = Number(res[1]);
      return w < 0 ? 500 : Math.max(5, w);
    }
    const [lane, klass, id, meta, body, tried, ver, threadRef, expired, target] = res.map(String) as string[];
    const c: Claimed = { lane: lane!, klass: klass!, id: id!, meta: JSON.parse(meta!) as Meta, body: body!, tried: tried!, ver: ver!, threadRef: threadRef!, expired: expired === '1', target: target! };
    await this.deliver(c, token);
    return 0;
  }

  private async finish(c: Claimed, token: string, ts: string, answered: boolean): Promise<void> {
    const channel = c.meta.kind === 'update' ? (c.id.split(':')[0] ?? '') : c.meta.channel;
    await runScript(this.redis, 'outbox-done', [], [this.outbox.prefix, c.lane, c.klass, token, c.id, channel, ts, c.ver, String(this.outbox.opts.refTtlMs), answered ? '1' : '0']);
    if (answered && this.downSince !== undefined) {
      this.log.info({ downMs: this.now() - this.downSince }, `Slack answers again after ${Math.round((this.now() - this.downSince) / 1000)} s; delivering what waited`);
      this.downSince = undefined;
    }
  }

  private async retry(c: Claimed, token: string, delayMs: number, sure: boolean, down: boolean): Promise<void> {
    const { opts, prefix } = this.outbox;
    await runScript(this.redis, 'outbox-retry', [], [prefix, c.lane, c.klass, token, c.id, String(delayMs), sure ? '1' : '0', down ? '1' : '0', String(opts.basePauseMs), String(opts.maxPauseMs)]);
  }

  private threadTs(c: Claimed): string | undefined {
    const t = c.meta.thread;
    if (!t) return undefined;
    if (!isRef(t)) return t;
    const ts = c.threadRef.split('|')[1];
    // The thread's head was refused for good: the reply is better seen at the top than lost.
    return ts && ts !== '!' ? ts : undefined;
  }

  private async deliver(c: Claimed, token: string): Promise<void> {
    const ctx = { ...c.meta.ctx, outboxId: c.id, lane: c.lane };
    if (c.expired) {
      this.log.error({ ...ctx, kind: c.meta.kind }, `Slack outbox: a ${c.meta.kind} waited past its expiry and is dropped`);
      await this.finish(c, token, c.meta.kind === 'post' ? '!' : '', false);
      return;
    }
    const method = { post: 'chat.postMessage', update: 'chat.update', ephemeral: 'chat.postEphemeral', file: 'files.uploadV2' }[c.meta.kind];
    try {
      let ts = '';
      if (c.meta.kind === 'post') {
        const channel = c.meta.channel;
        const thread_ts = this.threadTs(c);
        // A sender before this one may have posted it and died (or lost Slack's answer): look first.
        const already = c.tried ? await this.findPosted(channel, thread_ts, c.id, Number(c.tried)) : undefined;
        if (already) {
          this.log.info(ctx, 'Slack outbox: an interrupted post had reached Slack; not posting it again');
          ts = already;
        } else {
          const b = await this.stamped(c.body);
          const r = await this.client.chat.postMessage({ channel, thread_ts, text: b.text, blocks: b.blocks as never, unfurl_links: false, metadata: { event_type: OUTBOX_EVENT, event_payload: { id: c.id } } });
          ts = r.ts ?? '';
        }
      } else if (c.meta.kind === 'update') {
        const [channel, ts0] = c.target ? (c.target.split('|') as [string, string]) : [c.id.split(':')[0]!, c.id.slice(c.id.indexOf(':') + 1)];
        if (ts0 === '!') {
          await this.finish(c, token, '', false);
          return;
        }
        const b = await this.stamped(c.body);
        await this.client.chat.update({ channel, ts: ts0, text: b.text, blocks: b.blocks as never });
      } else if (c.meta.kind === 'ephemeral') {
        const b = await this.stamped(c.body);
        await this.client.chat.postEphemeral({ channel: c.meta.channel, user: c.meta.user!, thread_ts: this.threadTs(c), text: b.text, blocks: b.blocks as never });
      } else {
        // Files (a long table's CSV, streamed from Redis) go through the Slack surface's upload.
        const f = JSON.parse(c.body) as FileBody;
        const ok = await this.files.upload(c.meta.channel, this.threadTs(c), f, ctx);
        if (!ok) throw Object.assign(new Error('the file upload failed'), { code: ErrorCode.HTTPError, statusCode: 503 });
      }
      this.metrics?.slackCalls.labels(method).inc();
      this.delivered.set(c.meta.kind, (this.delivered.get(c.meta.kind) ?? 0) + 1);
      await this.finish(c, token, ts, true);
    } catch (e) {
      await this.failed(c, token, method, e, ctx);
    }
  }

  private async failed(c: Claimed, token: string, method: string, e: unknown, ctx: Record<string, unknown>): Promise<void> {
    const err = e as { code?: string; retryAfter?: number; data?: { error?: string }; message?: string; statusCode?: number; original?: { code?: string; message?: string } };
    if (err.code === ErrorCode.RateLimitedError && err.retryAfter !== undefined) {
      this.metrics?.slackRateLimited.labels(method).inc();
      this.log.warn({ ...ctx, method, retryAfter: err.retryAfter }, 'Slack rate limited the call; waiting Retry-After');
      // The budget's blocked key makes every sender honour it for this method.
      await runScript(this.redis, 'slack-block', [`${this.outbox.prefix}:slack:blocked:${method}`], [String(err.retryAfter)]);
      await this.retry(c, token, err.retryAfter * 1000, true, false);
      return;
    }
    if (err.code === ErrorCode.PlatformError) {
      const slackError = err.data?.error ?? 'unknown_error';
      if (TRANSIENT.has(slackError)) {
        this.log.warn({ ...ctx, method, slackError }, `Slack ${method} failed (${slackError}); trying again`);
        await this.retry(c, token, 2000, false, true);
        return;
      }
      // Slack answered and refused it for good (channel_not_found, not_in_channel, invalid_blocks…).
      this.log.error({ ...ctx, method, slackError }, `Slack ${method} failed: ${slackError}`);
      await this.finish(c, token, c.meta.kind === 'post' ? '!' : '', true);
      return;
    }
    // Slack unreachable or erroring: every sender pauses; this lane keeps its place.
    const why = err.statusCode ? `HTTP ${err.statusCode}` : (requestErrorCode(e) ?? err.original?.message ?? err.message ?? String(e));
    if (this.downSince === undefined) {
      this.downSince = this.now();
      this.log.warn({ ...ctx, method, why }, `Slack cannot be reached (${why}); messages wait in the outbox and go once it answers`);
    }
    await this.retry(c, token, 0, neverArrived(e), true);
  }

  /** Slack's ts of a post this outbox already made (found by its metadata), or undefined. */
  private async findPosted(channel: string, thread: string | undefined, id: string, triedAt: number): Promise<string | undefined> {
    const oldest = String((triedAt - 60_000) / 1000);
    type Found = { ts?: string; metadata?: { event_type?: string; event_payload?: { id?: unknown } } };
    let res: { messages?: unknown[] };
    try {
      res = thread
        ? await this.client.conversations.replies({ channel, ts: thread, oldest, include_all_metadata: true, limit: 200 })
        : await this.client.conversations.history({ channel, oldest, include_all_metadata: true, limit: 200 });
    } catch (e) {
      // Slack answered but will not show the channel (missing_scope, not_in_channel): post it, at worst twice.
      if ((e as { code?: string }).code !== ErrorCode.PlatformError) throw e;
      this.log.warn({ channel, outboxId: id, slackError: (e as { data?: { error?: string } }).data?.error }, 'Slack outbox could not check whether an interrupted post went; posting it');
      return undefined;
    }
    const found = ((res.messages ?? []) as Found[]).find((m) => m.metadata?.event_type === OUTBOX_EVENT && String(m.metadata.event_payload?.id) === id);
    return found?.ts;
  }
}
