/**
 * A local stand-in for Slack's Web API: a real HTTP server on loopback (point SLACK_API_URL at
 * `url`), for tests and the benchmark. It enforces what Slack enforces and records every call:
 *   - rate limits per method (chat.postMessage about 1 per second per channel, the Web API
 *     tiers per workspace), answered with HTTP 429 and Retry-After like Slack;
 *   - Block Kit limits (50 blocks, 3000-character sections, 10 fields, 25 buttons…), answered
 *     with `invalid_blocks`, and 40,000 characters of text (`msg_too_long`);
 *   - files.getUploadURLExternal → upload URL → files.completeUploadExternal;
 *   - response_url posts (slash-command follow-ups), at `responseUrl`.
 * `hold(method)` keeps a method's answers back until released (Slack being slow); with
 * `{ afterEffect: true }` the call takes effect first (the post is in the channel) and only the
 * answer is held (Slack's answer lost on the way back).
 * `outage('503' | 'refuse')` makes Slack fail until the returned end() is called: every Web
 * API call answered HTTP 503, or the port closed (connection refused) and opened again after.
 * Posted messages are kept with their metadata: conversations.history / conversations.replies
 * answer from them (include_all_metadata), as Slack does.
 * Socket Mode: apps.connections.open hands out a ws:// URL on the same port, where a minimal
 * WebSocket server (RFC 6455, enough for Slack's client: text, ping/pong, close) says `hello` on
 * connect; `socket` drops and refuses connections, withholds hello, sends envelopes and keeps
 * what the client sent back (acks).
 */
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface StandinCall {
  method: string;
  body: Record<string, unknown>;
  /** Arrival time (ms since epoch). */
  at: number;
  status: number;
  error?: string;
  /** For file uploads: bytes received. */
  bytes?: number;
}

/** Tokens per second and bucket size; `perChannel` keys the bucket by the channel too. */
interface Limit {
  perSecond: number;
  burst: number;
  perChannel?: boolean;
}

// Slack's published tiers (per method, per app, per workspace): Tier 2 20+/min, Tier 3 50+/min,
// Tier 4 100+/min; chat.postMessage 1 per second per channel with short bursts tolerated.
const TIER2: Limit = { perSecond: 20 / 60, burst: 5 };
const TIER3: Limit = { perSecond: 50 / 60, burst: 10 };
const TIER4: Limit = { perSecond: 100 / 60, burst: 20 };
export const STANDIN_LIMITS: Record<string, Limit> = {
  'chat.postMessage': { perSecond: 1, burst: 3, perChannel: true },
  'chat.update': TIER3,
  'chat.postEphemeral': TIER4,
  'chat.delete': TIER3,
  'views.publish': TIER4,
  'views.open': TIER4,
  'auth.test': TIER4,
  'usergroups.users.list': TIER2,
  'files.getUploadURLExternal': TIER4,
  'files.completeUploadExternal': TIER4,
  'conversations.info': TIER3,
};

const BLOCK_LIMITS = { blocks: 50, sectionText: 3000, fields: 10, fieldText: 2000, actions: 25, header: 150, buttonText: 75, contextElements: 10, value: 2000 };

type JsonBlock = {
  type?: string;
  text?: { text?: string };
  fields?: { text?: string }[];
  elements?: { text?: string | { text?: string }; value?: string }[];
};

/** The first Block Kit limit a message breaks, or null. */
export function blockKitViolation(blocks: unknown): string | null {
  if (blocks === undefined) return null;
  if (!Array.isArray(blocks)) return 'blocks is not an array';
  if (blocks.length > BLOCK_LIMITS.blocks) return `${blocks.length} blocks (max ${BLOCK_LIMITS.blocks})`;
  for (const [i, b] of (blocks as JsonBlock[]).entries()) {
    const t = b.text?.text ?? '';
    if (b.type === 'section' && t.length > BLOCK_LIMITS.sectionText) return `block ${i}: section text ${t.length} characters`;
    if (b.type === 'header' && t.length > BLOCK_LIMITS.header) return `block ${i}: header ${t.length} characters`;
    if (b.fields && (b.fields.length > BLOCK_LIMITS.fields || b.fields.some((f) => (f.text ?? '').length > BLOCK_LIMITS.fieldText))) return `block ${i}: fields over the limit`;
    if (b.type === 'actions' && (b.elements?.length ?? 0) > BLOCK_LIMITS.actions) return `block ${i}: ${b.elements!.length} actions`;
    if (b.type === 'actions') {
      for (const e of b.elements ?? []) {
        const label = typeof e.text === 'object' ? (e.text?.text ?? '') : '';
        if (label.length > BLOCK_LIMITS.buttonText || (e.value ?? '').length > BLOCK_LIMITS.value) return `block ${i}: button over the limit`;
      }
    }
    if (b.type === 'context' && (b.elements?.length ?? 0) > BLOCK_LIMITS.contextElements) return `block ${i}: ${b.elements!.length} context elements`;
  }
  return null;
}

export interface PostedMessage {
  channel: string;
  ts: string;
  thread_ts?: string;
  text: string;
  metadata?: { event_type?: string; event_payload?: Record<string, unknown> };
}

export interface SlackStandin {
  url: string;
  /** Base of response_url values handed to slash commands. */
  responseUrl: string;
  calls: StandinCall[];
  /** Calls answered 429. */
  rateLimited(): StandinCall[];
  /** The next `times` auth.test calls answer ok: false (fatal_error), as when Slack's API fails at Ferry's start. */
  failAuthTest(times: number): void;
  /** The next `times` calls of `method` answer HTTP 429 with Retry-After `seconds`, whatever the budget. */
  rateLimit(method: string, times: number, seconds: number): void;
  /** The next `times` posts to a response_url answer HTTP 503 (Slack's hooks failing with its API). */
  failResponseUrls(times: number): void;
  /** Hold every answer to `method` until the returned release() is called. */
  hold(method: string, opts?: { afterEffect?: boolean }): () => void;
  /** Slack fails (HTTP 503 on every Web API call, or connection refused) until end(). */
  outage(mode: '503' | 'refuse'): () => Promise<void>;
  /** Messages in the channel (top-level and replies) as Slack keeps them. */
  posted: PostedMessage[];
  socket: SocketModeStandin;
  close(): Promise<void>;
}

/** Slack's Socket Mode end, on the stand-in's port. */
export interface SocketModeStandin {
  /** WebSocket connections open now. */
  open(): number;
  /** Connection attempts refused so far (while down). */
  refused(): number;
  /** Messages the client sent (parsed JSON), oldest first. */
  received: Record<string, unknown>[];
  /** Resolves with the first message the client sends (from now on, or already received) that matches. */
  receivedWhere(match: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  /** New connections get no `hello` until release() (which greets those already open). */
  withholdHello(): () => void;
  /** Drop every connection (TCP closed, no close frame) and refuse new ones (HTTP 503) until end(). */
  down(): () => void;
  /** Send a message (an envelope) to every open connection. */
  send(message: Record<string, unknown>): void;
}

/** The reply to a WebSocket upgrade request (RFC 6455 section 4.2.2). */
const wsAccept = (key: string) => crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');

/** One unmasked frame from the server, the whole message in it (FIN set). */
function wsFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = Buffer.alloc(n < 126 ? 2 : n < 65536 ? 4 : 10);
  head[0] = 0x80 | opcode;
  if (n < 126) head[1] = n;
  else if (n < 65536) {
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

/**
 * Complete client frames at the start of buf (clients always mask), and the bytes left over.
 * Fragmented messages are not joined: Slack's client sends its short JSON acks in one frame.
 */
function wsFrames(buf: Buffer): { frames: { opcode: number; payload: Buffer }[]; rest: Buffer } {
  const frames: { opcode: number; payload: Buffer }[] = [];
  let at = 0;
  for (;;) {
    if (buf.length - at < 2) break;
    const opcode = buf[at]! & 0x0f;
    let len = buf[at + 1]! & 0x7f;
    let off = at + 2;
    if (len === 126) {
      if (buf.length < off + 2) break;
      len = buf.readUInt16BE(off);
      off += 2;
    } else if (len === 127) {
      if (buf.length < off + 8) break;
      len = Number(buf.readBigUInt64BE(off));
      off += 8;
    }
    if (buf.length < off + 4 + len) break;
    const mask = buf.subarray(off, off + 4);
    const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
    for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!;
    frames.push({ opcode, payload });
    at = off + 4 + len;
  }
  return { frames, rest: buf.subarray(at) };
}

async function readBody(req: http.IncomingMessage, keepUploads = false): Promise<{ raw: Buffer; bytes: number }> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const c of req) {
    bytes += (c as Buffer).length;
    // Uploads are counted, not kept (unless a test asks): a 10,000-host CSV must not sit in the stand-in's memory.
    if (keepUploads || !req.url?.startsWith('/upload/')) chunks.push(c as Buffer);
  }
  return { raw: Buffer.concat(chunks), bytes };
}

function parseBody(raw: Buffer, contentType: string | undefined): Record<string, unknown> {
  const text = raw.toString('utf8');
  if (!text) return {};
  if (contentType?.includes('application/json')) return JSON.parse(text) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of new URLSearchParams(text)) {
    try {
      out[k] = k === 'blocks' || k === 'view' || k === 'files' ? JSON.parse(v) : v;
    } catch {
      out[k] = v;
    }
  }
  return out;
}

export async function startSlackStandin(opts: { limits?: Record<string, Limit>; notMemberOf?: string[]; /** Keep uploaded files' content in the call's body.content. */ keepUploads?: boolean } = {}): Promise<SlackStandin> {
  const limits = { ...STANDIN_LIMITS, ...opts.limits };
  const calls: StandinCall[] = [];
  const buckets = new Map<string, { tokens: number; at: number }>();
  const held = new Map<string, { gate: Promise<void>; afterEffect: boolean }>();
  const posted: PostedMessage[] = [];
  let failing: '503' | null = null;
  let authFailures = 0;
  let responseUrlFailures = 0;
  const forced429 = new Map<string, { times: number; seconds: number }>();
  let seq = 0;
  let fileSeq = 0;
  let port = 0;

  /** Seconds to wait, or 0 if the call may go now (a token is taken). */
  const take = (method: string, channel: string | undefined): number => {
    const limit = limits[method];
    if (!limit) return 0;
    const key = limit.perChannel && channel ? `${method}:${channel}` : method;
    const now = Date.now();
    const b = buckets.get(key) ?? { tokens: limit.burst, at: now };
    b.tokens = Math.min(limit.burst, b.tokens + ((now - b.at) / 1000) * limit.perSecond);
    b.at = now;
    buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / limit.perSecond));
  };

  const answer = (method: string, body: Record<string, unknown>): Record<string, unknown> => {
    const violation = blockKitViolation(body.blocks);
    if (violation && method.startsWith('chat.')) return { ok: false, error: 'invalid_blocks', detail: violation };
    if (typeof body.text === 'string' && body.text.length > 40_000) return { ok: false, error: 'msg_too_long' };
    // A private channel or DM Ferry is not a member of: Slack says it does not exist.
    if (method.startsWith('chat.') && typeof body.channel === 'string' && opts.notMemberOf?.includes(body.channel)) return { ok: false, error: 'channel_not_found' };
    switch (method) {
      case 'auth.test':
        if (authFailures > 0) {
          authFailures--;
          return { ok: false, error: 'fatal_error' };
        }
        return { ok: true, user_id: 'UFERRY', bot_id: 'BFERRY', team_id: 'T1' };
      case 'chat.postMessage': {
        // Like Slack's: the current epoch second, unique within it.
        const ts = `${Math.floor(Date.now() / 1000)}.${String(++seq).padStart(6, '0')}`;
        const metadata = typeof body.metadata === 'string' ? (JSON.parse(body.metadata) as PostedMessage['metadata']) : (body.metadata as PostedMessage['metadata']);
        posted.push({ channel: String(body.channel), ts, ...(body.thread_ts ? { thread_ts: String(body.thread_ts) } : {}), text: String(body.text ?? ''), ...(metadata ? { metadata } : {}) });
        return { ok: true, channel: body.channel, ts, message: { text: body.text } };
      }
      case 'conversations.history': {
        const oldest = Number(body.oldest ?? 0);
        const messages = posted.filter((m) => m.channel === body.channel && !m.thread_ts && Number(m.ts) >= oldest).reverse();
        return { ok: true, messages: messages.map((m) => ({ type: 'message', ts: m.ts, text: m.text, ...(body.include_all_metadata && m.metadata ? { metadata: m.metadata } : {}) })) };
      }
      case 'conversations.replies': {
        const oldest = Number(body.oldest ?? 0);
        const messages = posted.filter((m) => m.channel === body.channel && (m.ts === body.ts || m.thread_ts === body.ts) && Number(m.ts) >= oldest);
        return { ok: true, messages: messages.map((m) => ({ type: 'message', ts: m.ts, thread_ts: m.thread_ts ?? m.ts, text: m.text, ...(body.include_all_metadata && m.metadata ? { metadata: m.metadata } : {}) })) };
      }
      case 'chat.update':
        return { ok: true, channel: body.channel, ts: body.ts };
      case 'chat.postEphemeral':
        return { ok: true, message_ts: `${1_700_000_000 + ++seq}.000200` };
      case 'files.getUploadURLExternal': {
        const id = `F${++fileSeq}`;
        return { ok: true, upload_url: `http://127.0.0.1:${port}/upload/${id}`, file_id: id };
      }
      case 'files.completeUploadExternal':
        return { ok: true, files: (body.files as { id: string }[] | undefined)?.map((f) => ({ id: f.id })) ?? [] };
      case 'usergroups.users.list':
        return { ok: true, users: [] };
      case 'apps.connections.open':
        return { ok: true, url: `ws://127.0.0.1:${port}/link/?ticket=${++seq}` };
      default:
        return { ok: true };
    }
  };

  const server = http.createServer((req, res) => {
    void (async () => {
      const at = Date.now();
      const { raw, bytes } = await readBody(req, opts.keepUploads);
      const url = req.url ?? '/';
      if (url.startsWith('/upload/')) {
        calls.push({ method: 'upload', body: { id: url.slice(8), ...(opts.keepUploads ? { content: raw.toString('utf8') } : {}) }, at, status: 200, bytes });
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('OK');
        return;
      }
      let body: Record<string, unknown>;
      try {
        body = parseBody(raw, req.headers['content-type']);
      } catch {
        res.writeHead(400).end();
        return;
      }
      if (url.startsWith('/commands/')) {
        if (responseUrlFailures > 0) {
          responseUrlFailures--;
          calls.push({ method: 'response_url', body, at, status: 503, error: 'outage' });
          res.writeHead(503, { 'content-type': 'text/plain' });
          res.end('service unavailable');
          return;
        }
        const violation = blockKitViolation(body.blocks);
        calls.push({ method: 'response_url', body, at, status: violation ? 400 : 200, error: violation ?? undefined });
        res.writeHead(violation ? 400 : 200, { 'content-type': 'text/plain' });
        res.end(violation ? 'invalid_blocks' : 'ok');
        return;
      }
      const method = url.replace(/^\/api\//, '').replace(/\?.*$/, '');
      if (failing) {
        calls.push({ method, body, at, status: 503, error: 'outage' });
        res.writeHead(503, { 'content-type': 'text/plain' });
        res.end('Service Unavailable');
        return;
      }
      const forced = forced429.get(method);
      const wait = forced && forced.times-- > 0 ? forced.seconds : take(method, typeof body.channel === 'string' ? body.channel : typeof body.channel_id === 'string' ? body.channel_id : undefined);
      if (wait > 0) {
        calls.push({ method, body, at, status: 429, error: 'ratelimited' });
        res.writeHead(429, { 'retry-after': String(wait), 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: false, error: 'ratelimited' }));
        return;
      }
      const hold = held.get(method);
      if (hold && !hold.afterEffect) await hold.gate;
      const out = answer(method, body);
      calls.push({ method, body, at, status: 200, error: out.ok ? undefined : String(out.error) });
      if (hold?.afterEffect) await hold.gate;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(out));
    })().catch(() => {
      res.writeHead(500).end();
    });
  });
  server.keepAliveTimeout = 30_000;

  // Socket Mode's WebSocket end.
  const links = new Set<Socket>();
  const received: Record<string, unknown>[] = [];
  const heard = new EventEmitter();
  let refusing = false;
  let refusals = 0;
  let helloHeld = false;
  const hello = (s: Socket) => s.write(wsFrame(1, Buffer.from(JSON.stringify({ type: 'hello', num_connections: links.size, debug_info: { host: 'standin' }, connection_info: { app_id: 'A1' } }))));
  server.on('upgrade', (req: http.IncomingMessage, s: Socket) => {
    const key = req.headers['sec-websocket-key'];
    if (refusing || !req.url?.startsWith('/link/') || typeof key !== 'string') {
      refusals++;
      s.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${wsAccept(key)}\r\n\r\n`);
    links.add(s);
    s.on('close', () => links.delete(s));
    s.on('error', () => links.delete(s));
    let pending: Buffer = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      const { frames, rest } = wsFrames(Buffer.concat([pending, d]));
      pending = rest;
      for (const f of frames) {
        if (f.opcode === 1) {
          try {
            const m = JSON.parse(f.payload.toString('utf8')) as Record<string, unknown>;
            received.push(m);
            heard.emit('message', m);
          } catch {
            // Not JSON: Slack ignores it too.
          }
        } else if (f.opcode === 9) s.write(wsFrame(10, f.payload));
        else if (f.opcode === 8) s.end(wsFrame(8, f.payload.subarray(0, 2)));
      }
    });
    if (!helloHeld) hello(s);
  });
  const socket: SocketModeStandin = {
    open: () => links.size,
    refused: () => refusals,
    received,
    receivedWhere(match) {
      const seen = received.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve) => {
        const on = (m: Record<string, unknown>) => {
          if (!match(m)) return;
          heard.off('message', on);
          resolve(m);
        };
        heard.on('message', on);
      });
    },
    withholdHello() {
      helloHeld = true;
      return () => {
        helloHeld = false;
        for (const s of links) hello(s);
      };
    },
    down() {
      refusing = true;
      for (const s of links) s.destroy();
      return () => {
        refusing = false;
      };
    },
    send(message) {
      for (const s of links) s.write(wsFrame(1, Buffer.from(JSON.stringify(message))));
    },
  };

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/api/`,
    responseUrl: `http://127.0.0.1:${port}/commands/`,
    calls,
    rateLimited: () => calls.filter((c) => c.status === 429),
    posted,
    socket,
    failAuthTest(times) {
      authFailures = times;
    },
    rateLimit(method, times, seconds) {
      forced429.set(method, { times, seconds });
    },
    failResponseUrls(times) {
      responseUrlFailures = times;
    },
    outage(mode) {
      if (mode === '503') {
        failing = '503';
        return async () => {
          failing = null;
        };
      }
      // Connection refused: nobody listens on the port until the outage ends.
      for (const s of links) s.destroy();
      server.closeAllConnections();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      return async () => {
        await closed;
        await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
      };
    },
    hold(method, opts = {}) {
      let release!: () => void;
      held.set(method, { gate: new Promise<void>((r) => (release = r)), afterEffect: Boolean(opts.afterEffect) });
      return () => {
        held.delete(method);
        release();
      };
    },
    async close() {
      // Upgraded sockets are no longer the HTTP server's: closed here.
      for (const s of links) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
