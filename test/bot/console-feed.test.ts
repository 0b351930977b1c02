/**
 * The console's feed is a stream, not pub/sub: what is written while the reader's connection is
 * away (killed, Redis restarted, Redis back empty) is read once it is back, in order. With
 * pub/sub those messages were gone, and a drain's thread never showed "Ferry's Redis lost its
 * data" in loaded runs (the worker wrote it before the console's subscriber had reconnected).
 */
import { afterEach, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { appendConsoleEvent, ConsoleFeed, consoleStream, type ConsoleEvent, type ConsoleMarker } from '../../src/bot/console/surface.js';
import { message } from '../../src/chat/messages.js';
import { DURABLE, startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';
import { eventually } from '../support/wait.js';

let redis: PrivateRedis | undefined;
const closers: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  await redis?.close();
});

const post = (text: string): ConsoleEvent => ({ kind: 'post', ref: { channel: 's', ts: text }, message: message(text) });
const texts = (seen: (ConsoleEvent | ConsoleMarker)[]) => seen.map((e) => (e.kind === 'post' ? e.message.text : e.kind));

async function setup(retryMs: number) {
  redis = await startPrivateRedis(DURABLE);
  // The reader reconnects a second after it is cut off: the writes below land while it is away.
  const readerConn = new Redis(redis.url, { maxRetriesPerRequest: null, retryStrategy: () => retryMs });
  const writer = new Redis(redis.url, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
  readerConn.on('error', () => undefined);
  writer.on('error', () => undefined);
  const seen: (ConsoleEvent | ConsoleMarker)[] = [];
  const feed = new ConsoleFeed(readerConn, consoleStream('t', 's1'), (e) => seen.push(e));
  closers.push(() => feed.stop(), () => writer.disconnect());
  await appendConsoleEvent(writer, 't', 's1', post('before start'));
  await feed.start();
  return { readerConn, writer, seen };
}

it('reads from where it started, and what was written while its connection was cut, in order', async () => {
  const { readerConn, writer, seen } = await setup(1000);
  await appendConsoleEvent(writer, 't', 's1', post('one'));
  await eventually(async () => (seen.length === 1 ? true : undefined), 'the first post', 5000);
  const id = await readerConn.client('ID');
  await writer.client('KILL', 'ID', String(id));
  for (const t of ['two', 'three', 'four']) await appendConsoleEvent(writer, 't', 's1', post(t));
  expect(readerConn.status).not.toBe('ready');
  await eventually(async () => (seen.length === 4 ? true : undefined), 'the posts written while the reader was away', 10_000);
  expect(texts(seen)).toEqual(['one', 'two', 'three', 'four']);
});

it('after a Redis that came back empty, the new entries are read', async () => {
  const { writer, seen } = await setup(200);
  await appendConsoleEvent(writer, 't', 's1', post('one'));
  await eventually(async () => (seen.length === 1 ? true : undefined), 'the first post', 5000);
  await redis!.stop();
  await redis!.start({ fresh: true });
  await appendConsoleEvent(writer, 't', 's1', post("Ferry's Redis lost its data"));
  await eventually(async () => (seen.length === 2 ? true : undefined), 'the post written into the empty Redis', 10_000);
  expect(texts(seen)).toEqual(['one', "Ferry's Redis lost its data"]);
});
