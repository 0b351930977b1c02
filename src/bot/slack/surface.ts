/**
 * The Slack side of the SurfaceRouter: Web API calls through the shared budget, Retry-After honoured,
 * and Web API errors (channel_not_found, not_in_channel, invalid_auth…) logged with the job
 * id and swallowed: the operation's result stays in Redis even when Slack cannot show it.
 */
import { WebClient, ErrorCode, LogLevel } from '@slack/web-api';
import type { Logger } from '../../log.js';
import type { Message } from '../../chat/messages.js';
import { renderSlack, renderSlackSingle } from '../render/slack.js';
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
    for (const file of rendered.files) {
      const dest = threadTs ? { channel_id: channel, thread_ts: threadTs } : { channel_id: channel };
      await this.call('files.uploadV2', channel, () => this.client.filesUploadV2({ ...dest, filename: file.filename, title: file.title, content: file.content }), context);
    }
    return first;
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
