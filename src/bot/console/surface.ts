/**
 * The console side of the SurfaceRouter: messages for a console session are appended to a Redis
 * stream the console reads, so a worker in another process can report into a terminal exactly
 * as into a Slack thread. A stream, not pub/sub: a reader that was reconnecting (Redis restarted,
 * or came back empty) reads what was written meanwhile, where a published message would be gone.
 */
import type { Redis } from 'ioredis';
import type { Message } from '../../chat/messages.js';
import type { Conversation, MessageRef, Surface } from '../../chat/conversation.js';

export type ConsoleEvent =
  | { kind: 'post'; ref: MessageRef; threadTs?: string; message: Message }
  | { kind: 'update'; ref: MessageRef; message: Message }
  | { kind: 'ephemeral'; user: string; message: Message };

/** A marker a reader writes to know when everything written before it has been read. */
export interface ConsoleMarker {
  kind: 'marker';
  id: string;
}

export function consoleStream(prefix: string, session: string): string {
  return `${prefix}:console:${session}`;
}

/** A session's stream keeps its last entries for a day: enough for a reader to catch up. */
const KEEP_ENTRIES = 1000;
const KEEP_SECONDS = 86_400;

export async function appendConsoleEvent(redis: Redis, prefix: string, session: string, ev: ConsoleEvent | ConsoleMarker): Promise<void> {
  const key = consoleStream(prefix, session);
  // One round trip: every post and card update of a console session comes through here.
  const replies = await redis.multi().xadd(key, 'MAXLEN', '~', KEEP_ENTRIES, '*', 'e', JSON.stringify(ev)).expire(key, KEEP_SECONDS).exec();
  const failed = replies?.find(([err]) => err)?.[0];
  if (failed) throw failed;
}

/**
 * One session's events in the order they were written, from the end of the stream at start().
 * Owns its connection (blocking reads); across a Redis restart the read is made again and goes on
 * from the last entry read, and after a Redis that lost its data, from the new entries (stream
 * ids grow with the clock).
 */
export class ConsoleFeed {
  private last = '0-0';
  private stopped = false;
  private reading: Promise<void> | undefined;

  constructor(
    private readonly conn: Redis,
    private readonly key: string,
    private readonly onEvent: (ev: ConsoleEvent | ConsoleMarker) => void,
  ) {}

  async start(): Promise<void> {
    const tail = await this.conn.xrevrange(this.key, '+', '-', 'COUNT', 1);
    this.last = tail[0]?.[0] ?? '0-0';
    this.reading = this.read();
  }

  private async read(): Promise<void> {
    while (!this.stopped) {
      let got: [string, [string, string[]][]][] | null;
      try {
        got = (await this.conn.xread('BLOCK', 1000, 'STREAMS', this.key, this.last)) as [string, [string, string[]][]][] | null;
      } catch {
        if (this.stopped) return;
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      for (const [, entries] of got ?? []) {
        for (const [id, fields] of entries) {
          this.last = id;
          const raw = fields[fields.indexOf('e') + 1];
          if (raw !== undefined) this.onEvent(JSON.parse(raw) as ConsoleEvent | ConsoleMarker);
        }
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.conn.disconnect();
    await this.reading?.catch(() => undefined);
  }
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
    await appendConsoleEvent(this.redis, this.prefix, session, { kind: 'post', ref, threadTs: conv.threadTs, message });
    return ref;
  }

  async update(conv: Conversation, ref: MessageRef, message: Message): Promise<void> {
    await appendConsoleEvent(this.redis, this.prefix, this.session(conv), { kind: 'update', ref, message });
  }

  async ephemeral(conv: Conversation, message: Message): Promise<void> {
    await appendConsoleEvent(this.redis, this.prefix, this.session(conv), { kind: 'ephemeral', user: conv.user, message });
  }
}
