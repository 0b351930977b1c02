/**
 * Test harness: a whole Ferry (runtime, deps, in-process workers) over the private test Redis,
 * with a console session whose messages are captured. Each harness has its own key prefix.
 */
import { inject } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { LAB_DEFAULT_YAML } from '../../src/config/lab-default.js';
import { createRuntime, type Clock, type Runtime } from '../../src/runtime.js';
import { createFerry, type Ferry, type FerryOptions } from '../../src/ferry.js';
import type { AdapterFactory } from '../../src/adapters/registry.js';
import type { AdapterKind } from '../../src/adapters/types.js';
import { startWorkers, type WorkerSet } from '../../src/jobs/worker.js';
import { silentLogger } from '../../src/log.js';
import { handleLine } from '../../src/bot/commands.js';
import { message, type Message } from '../../src/chat/messages.js';
import { renderText } from '../../src/bot/render/text.js';
import { appendConsoleEvent, ConsoleFeed, consoleStream, type ConsoleEvent } from '../../src/bot/console/surface.js';
import { inThread, type Conversation } from '../../src/chat/conversation.js';
import { FINISHED, type Operation } from '../../src/jobs/operations.js';
import { timeBound } from './speed.js';
import { within } from './wait.js';

let counter = 0;

export function uniquePrefix(name: string): string {
  return `t-${name}-${process.pid}-${Date.now().toString(36)}-${counter++}`;
}

/** The built-in lab with fast timings, optionally with extra YAML merged at top level. */
export function fastLabYaml(extra = '', timings = { latencyMs: 5, migrationMs: 100 }): string {
  return LAB_DEFAULT_YAML.replace('latencyMs: 150', `latencyMs: ${timings.latencyMs}`).replace('migrationMs: 3000', `migrationMs: ${timings.migrationMs}`) + extra;
}

export interface Harness {
  rt: Runtime;
  deps: Ferry;
  workers?: WorkerSet;
  session: string;
  events: ConsoleEvent[];
  /** Run one line as `user` in the harness's console session. */
  run(line: string, user?: string): Promise<void>;
  /** Rendered text of everything posted so far (posts, updates, ephemerals). */
  transcript(): string;
  ephemerals(user?: string): string[];
  /**
   * Poll until probe returns something truthy. timeoutMs is the idle-machine figure; the wait
   * allows that times the slowness measured as the wait starts (test/support/speed.ts) and says
   * so on failure. Once it holds, everything posted before is in the transcript (sync()).
   */
  waitFor<T>(probe: () => Promise<T | undefined | null | false>, what: string, timeoutMs?: number): Promise<T>;
  /**
   * Wait until the transcript shows this text (posts arrive over pub/sub after the operation's
   * state changed, so read the transcript through this, not right after waitForOp). Returns it.
   */
  waitForText(text: string | RegExp, timeoutMs?: number): Promise<string>;
  /** Wait until the newest operation of this session (or a given id) has finished. */
  waitForOp(id?: number, timeoutMs?: number): Promise<Operation>;
  /**
   * A barrier: resolves once every console message written before this call is in events.
   * The session's stream is read in order, so a marker written now is read after them; reading
   * the transcript right after reading state from another connection can otherwise miss the
   * last posts (they were written first but are still being read).
   */
  sync(): Promise<void>;
  /**
   * Run a planning command (drain, migrate) and wait for its plan card to wait for Start. The
   * operation it waits for is newer than any before the line; one that ends instead fails fast.
   */
  planned(line: string, opts?: { user?: string; timeoutMs?: number }): Promise<Operation>;
  close(): Promise<void>;
}

export async function makeHarness(opts: { yaml?: string; prefix?: string; workers?: boolean; clock?: Clock; env?: NodeJS.ProcessEnv;
    redisUrl?: string;
    /** Replace a workflow's descriptor (see createFerry). */
    adjust?: FerryOptions['adjust'];
    /** Replace an adapter kind's factory. */
    adapters?: Partial<Record<AdapterKind, AdapterFactory>>;
  } = {},
): Promise<Harness> {
  const redisUrl = opts.redisUrl ?? inject('redisUrl');
  const loaded = parseConfig(opts.yaml ?? fastLabYaml(), 'test', { ...process.env, ...opts.env });
  const rt = createRuntime({ loaded, redisUrl, log: silentLogger(), prefix: opts.prefix ?? uniquePrefix('h'), clock: opts.clock, adapters: opts.adapters });
  const deps = createFerry(rt, opts.workers === false ? 'web' : 'all', { env: opts.env ?? {}, adjust: opts.adjust });
  const workers = opts.workers === false ? undefined : await startWorkers(deps);
  const session = `s${counter++}`;
  const events: ConsoleEvent[] = [];
  const syncs = new Map<string, () => void>();
  const feed = new ConsoleFeed(rt.newConnection(), consoleStream(rt.prefix, session), (e) => {
    if (e.kind === 'marker') syncs.get(e.id)?.();
    else events.push(e);
  });
  await feed.start();

  const h: Harness = {
    rt,
    deps,
    workers,
    session,
    events,
    async run(line, user = 'alice') {
      const conv: Conversation = { surface: 'console', session, user };
      await handleLine(deps, {
        text: line,
        user,
        conv,
        channel: 'console',
        refuse: (r) => deps.outbox.ephemeral(conv, message(r.sentence)),
        answer: async (msg: Message) => inThread(conv, await deps.outbox.post(conv, msg)),
      });
    },
    transcript() {
      return events.map((e) => renderText(e.message)).join('\n');
    },
    ephemerals(user) {
      return events.filter((e): e is Extract<ConsoleEvent, { kind: 'ephemeral' }> => e.kind === 'ephemeral' && (!user || e.user === user)).map((e) => renderText(e.message));
    },
    async waitFor(probe, what, timeoutMs = 20_000) {
      const limit = timeBound(timeoutMs);
      const deadline = Date.now() + limit.ms;
      for (;;) {
        const v = await probe();
        if (v) {
          // What was posted before the state the probe saw is in the transcript too. Best effort:
          // a test that takes Redis away right after must not wait on the marker.
          await h.sync().catch(() => undefined);
          return v as never;
        }
        if (Date.now() > deadline) throw new Error(`timed out after ${limit.ms} ms waiting for ${what} (${limit.why})\n--- transcript ---\n${h.transcript()}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async waitForText(text, timeoutMs = 10_000) {
      const seen = (): string | undefined => {
        const t = h.transcript();
        return (typeof text === 'string' ? t.includes(text) : text.test(t)) ? t : undefined;
      };
      return h.waitFor(async () => seen(), `the transcript to show ${String(text)}`, timeoutMs);
    },
    async sync() {
      const id = `${session}-${counter++}`;
      const arrived = new Promise<void>((resolve) => syncs.set(id, resolve));
      const published = appendConsoleEvent(rt.redis, rt.prefix, session, { kind: 'marker', id });
      try {
        await within(Promise.all([published, arrived]), 'the console channel did not echo a marker', 5000);
      } finally {
        syncs.delete(id);
      }
    },
    async waitForOp(id, timeoutMs) {
      const op = await h.waitFor(
        async () => {
          const ops = id ? [await deps.ops.get(id)] : await deps.ops.recent(5);
          const op = ops.find((o) => o && o.conv.surface === 'console' && o.conv.session === session);
          return op && FINISHED.includes(op.status) ? op : undefined;
        },
        `operation ${id ?? '(latest)'} to finish`,
        timeoutMs,
      );
      return op;
    },
    async planned(line, opts = {}) {
      const before = (await deps.ops.recent(1))[0]?.id ?? 0;
      await h.run(line, opts.user);
      const op = await h.waitFor(async () => {
        const o = (await deps.ops.recent(1))[0];
        return o && o.id > before ? o : undefined;
      }, `a new operation for ${line}`);
      const planned = await h.waitFor(
        async () => {
          const o = await deps.ops.get(op.id);
          if (o && FINISHED.includes(o.status)) throw new Error(`${line}: ended ${o.status}: ${o.summary}\n${h.transcript()}`);
          return o?.params.stage === 'awaiting-start' && o.status === 'waiting' ? o : undefined;
        },
        `${line} to be planned`,
        opts.timeoutMs,
      );
      return planned;
    },
    async close() {
      await workers?.close();
      await feed.stop();
      await deps.close();
      await rt.close();
    },
  };
  return h;
}
