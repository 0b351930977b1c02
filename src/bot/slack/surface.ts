/**
 * The Slack side of the SurfaceRouter: Web API calls through the shared budget, Retry-After honoured,
 * and Web API errors (channel_not_found, not_in_channel, invalid_auth…) logged with the job
 * id and swallowed: the operation's result stays in Redis even when Slack cannot show it.
 */
import http from 'node:http';
import https from 'node:https';
import { once } from 'node:events';
import { WebClient, ErrorCode, LogLevel } from '@slack/web-api';
import type { Logger } from '../../log.js';
import type { Message, TableFile } from '../../chat/messages.js';
import { renderSlack, renderSlackSingle, type SlackRendering } from '../render/slack.js';
import type { Conversation, MessageRef, Surface } from '../../chat/conversation.js';
import type { SlackBudget } from './budget.js';
import { logContext } from '../../log-context.js';
import type { Metrics } from '../../metrics.js';

export function createWebClient(token: string, slackApiUrl?: string): WebClient {
  return new WebClient(token, {
    slackApiUrl: slackApiUrl ? slackApiUrl.replace(/\/?$/, '/') : undefined,
    rejectRateLimitedCalls: true,
    retryConfig: { retries: 2, factor: 2, minTimeout: 200, maxTimeout: 2000 },
    logLevel: LogLevel.ERROR,
  });
}

/**
 * The outbox's client: no retries of its own (the outbox retries with its lanes in order) and a
 * request timeout well inside the outbox lease, so a slow answer is never mistaken for a dead sender.
 */
export function createOutboxClient(token: string, slackApiUrl: string | undefined, timeoutMs: number): WebClient {
  return new WebClient(token, {
    slackApiUrl: slackApiUrl ? slackApiUrl.replace(/\/?$/, '/') : undefined,
    rejectRateLimitedCalls: true,
    retryConfig: { retries: 0 },
    timeout: timeoutMs,
    logLevel: LogLevel.ERROR,
  });
}

interface SlackishError {
  code?: string;
  data?: { error?: string };
  retryAfter?: number;
  message?: string;
}

export class SlackSurface implements Surface {
  /** Calls made, by method: the benchmark and tests read this. */
  readonly calls = new Map<string, number>();

  constructor(
    readonly client: WebClient,
    private readonly budget: SlackBudget,
    private readonly log: Logger,
    private readonly metrics?: Metrics,
    /** The lines of a long table's CSV, page by page (jobs/table-file.ts), for a streamed upload. */
    private readonly fileLines?: (file: TableFile) => AsyncIterable<string[]>,
  ) {}

  private async call<T>(method: string, channel: string | undefined, fn: () => Promise<T>, extra: Record<string, unknown>): Promise<T | null> {
    // The job and operation this call serves, when it runs inside a job.
    const context = { ...logContext(), ...extra };
    for (let attempt = 0; attempt < 4; attempt++) {
      await this.budget.acquire(method, channel);
      this.calls.set(method, (this.calls.get(method) ?? 0) + 1);
      this.metrics?.slackCalls.labels(method).inc();
      try {
        return await fn();
      } catch (e) {
        const err = e as SlackishError;
        if (err.code === ErrorCode.RateLimitedError && err.retryAfter !== undefined) {
          this.metrics?.slackRateLimited.labels(method).inc();
          this.log.warn({ method, channel, retryAfter: err.retryAfter, ...context }, 'Slack rate limited the call; waiting Retry-After');
          await this.budget.blockFor(method, err.retryAfter);
          continue;
        }
        const slackError = err.data?.error ?? err.message ?? String(e);
        this.log.error({ method, channel, slackError, ...context }, `Slack ${method} failed: ${slackError}`);
        return null;
      }
    }
    this.log.error({ method, channel, ...context }, `Slack ${method} still rate limited after retries; giving up this call`);
    return null;
  }

  private channelOf(conv: Conversation): string {
    if (conv.surface !== 'slack') throw new Error('SlackSurface got a console conversation');
    return conv.channel;
  }

  async post(conv: Conversation, msg: Message, context: Record<string, unknown> = {}): Promise<MessageRef | null> {
    const channel = this.channelOf(conv);
    const rendered = renderSlack(msg);
    let first: MessageRef | null = null;
    for (const payload of rendered.messages) {
      const res = await this.call('chat.postMessage', channel, () =>
        this.client.chat.postMessage({ channel, thread_ts: conv.threadTs, text: payload.text, blocks: payload.blocks as never, unfurl_links: false }),
      context);
      if (res?.ts && !first) first = { channel: (res.channel as string | undefined) ?? channel, ts: res.ts };
      if (!res) break;
    }
    const threadTs = conv.threadTs ?? first?.ts;
    for (const file of rendered.files) await this.upload(channel, threadTs, file, context);
    return first;
  }

  /** One file into a channel or thread (the outbox sends its files through here); false when it did not go. */
  async upload(channel: string, threadTs: string | undefined, file: SlackRendering['files'][number], context: Record<string, unknown> = {}): Promise<boolean> {
    const dest = threadTs ? { channel_id: channel, thread_ts: threadTs } : { channel_id: channel };
    if ('stream' in file) return this.uploadStream(dest, file, context);
    return (await this.call('files.uploadV2', channel, () => this.client.filesUploadV2({ ...dest, filename: file.filename, title: file.title, content: file.content }), context)) !== null;
  }

  /**
   * A long table's CSV, streamed from Redis into Slack's upload URL a page at a time (never whole
   * in memory): files.getUploadURLExternal with its length, the bytes, files.completeUploadExternal.
   */
  private async uploadStream(dest: { channel_id: string; thread_ts?: string }, file: { filename: string; title: string; stream: TableFile }, context: Record<string, unknown>): Promise<boolean> {
    const channel = dest.channel_id;
    if (!this.fileLines) {
      this.log.error({ channel, file: file.filename, ...context }, 'a streamed table file cannot be read by this process; not attached');
      return true;
    }
    const url = await this.call('files.getUploadURLExternal', channel, () => this.client.files.getUploadURLExternal({ filename: file.filename, length: file.stream.bytes }), context);
    if (!url?.upload_url || !url.file_id) return false;
    try {
      await this.sendLines(url.upload_url, file.stream, this.fileLines);
    } catch (e) {
      this.log.error({ channel, file: file.filename, err: e, ...context }, 'Slack file upload failed');
      return false;
    }
    return (await this.call('files.completeUploadExternal', channel, () => this.client.files.completeUploadExternal({ files: [{ id: url.file_id!, title: file.title }], ...dest }), context)) !== null;
  }

  private sendLines(url: string, file: TableFile, lines: (file: TableFile) => AsyncIterable<string[]>): Promise<void> {
    const target = new URL(url);
    return new Promise((resolve, reject) => {
      const req = (target.protocol === 'https:' ? https : http).request(
        target,
        { method: 'POST', headers: { 'content-type': 'text/csv', 'content-length': String(file.bytes), ...(this.client.token ? { authorization: `Bearer ${this.client.token}` } : {}) } },
        (res) => {
          res.resume();
          res.on('end', () => ((res.statusCode ?? 500) < 300 ? resolve() : reject(new Error(`the upload URL answered ${res.statusCode}`))));
        },
      );
      req.on('error', reject);
      void (async () => {
        for await (const page of lines(file)) {
          if (!req.write(page.map((l) => `${l}\n`).join(''))) await once(req, 'drain');
        }
        req.end();
      })().catch((e: unknown) => req.destroy(e instanceof Error ? e : new Error(String(e))));
    });
  }

  async update(conv: Conversation, ref: MessageRef, msg: Message, context: Record<string, unknown> = {}): Promise<void> {
    const payload = renderSlackSingle(msg);
    await this.call('chat.update', ref.channel, () => this.client.chat.update({ channel: ref.channel, ts: ref.ts, text: payload.text, blocks: payload.blocks as never }), context);
  }

  async ephemeral(conv: Conversation, msg: Message, context: Record<string, unknown> = {}): Promise<void> {
    const channel = this.channelOf(conv);
    const payload = renderSlackSingle(msg);
    await this.call('chat.postEphemeral', channel, () =>
      this.client.chat.postEphemeral({ channel, user: conv.user, thread_ts: conv.threadTs, text: payload.text, blocks: payload.blocks as never }),
    context);
  }
}
