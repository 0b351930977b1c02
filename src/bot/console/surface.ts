/**
 * The console side of the SurfaceRouter: messages for a console session go over Redis pub/sub, so a
 * worker in another process can report into a terminal exactly as into a Slack thread.
 */
import type { Redis } from 'ioredis';
import type { Message } from '../../chat/messages.js';
import type { Conversation, MessageRef, Surface } from '../../chat/conversation.js';

export type ConsoleEvent =
  | { kind: 'post'; ref: MessageRef; threadTs?: string; message: Message }
  | { kind: 'update'; ref: MessageRef; message: Message }
  | { kind: 'ephemeral'; user: string; message: Message };

export function consoleChannel(prefix: string, session: string): string {
  return `${prefix}:console:${session}`;
}

export class ConsoleSurface implements Surface {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private session(conv: Conversation): string {
    if (conv.surface !== 'console') throw new Error('ConsoleSurface got a Slack conversation');
    return conv.session;
  }

  async post(conv: Conversation, message: Message): Promise<MessageRef> {
    const session = this.session(conv);
    const seq = await this.redis.incr(`${this.prefix}:console:seq`);
    const ref = { channel: session, ts: `c${seq}` };
    await this.redis.publish(consoleChannel(this.prefix, session), JSON.stringify({ kind: 'post', ref, threadTs: conv.threadTs, message } satisfies ConsoleEvent));
    return ref;
  }

  async update(conv: Conversation, ref: MessageRef, message: Message): Promise<void> {
    await this.redis.publish(consoleChannel(this.prefix, this.session(conv)), JSON.stringify({ kind: 'update', ref, message } satisfies ConsoleEvent));
  }

  async ephemeral(conv: Conversation, message: Message): Promise<void> {
    await this.redis.publish(consoleChannel(this.prefix, this.session(conv)), JSON.stringify({ kind: 'ephemeral', user: conv.user, message } satisfies ConsoleEvent));
  }
}
