/**
 * What the benches that drive Ferry's own workflows share: a private Redis, the runtime with
 * in-process workers, a console session nobody reads, and the plan / Start / finished steps
 * timed from the Start. Figures are end to end through handleLine, as a user's typed line goes.
 */
import { pathToFileURL } from 'node:url';
import { startPrivateRedis } from '../test/support/redis-server.js';
import { parseConfig } from '../src/config/load.js';
import { createRuntime } from '../src/runtime.js';
import { createFerry } from '../src/ferry.js';
import { startWorkers } from '../src/jobs/worker.js';
import { handleLine } from '../src/bot/commands.js';
import type { Message } from '../src/chat/messages.js';
import { inThread, type Conversation } from '../src/chat/conversation.js';
import { silentLogger } from '../src/log.js';
import { FINISHED, type Operation } from '../src/jobs/operations.js';
import type { Deps } from '../src/jobs/context.js';

export interface BenchFerry {
  deps: Deps;
  /** One typed line from alice; a refusal throws. */
  run(text: string): Promise<void>;
  /** Types `text` (drain, migrate…) and waits for its plan to wait for Start. */
  planned(text: string): Promise<Operation>;
  /** Starts a planned operation; resolves when it has finished, with the ms from Start to the end. */
  startAndWait(op: Operation): Promise<{ op: Operation; ms: number }>;
  close(): Promise<void>;
}

const until = async <T>(probe: () => Promise<T | undefined>): Promise<T> => {
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
};

export async function benchFerry(yaml: string, prefix: string): Promise<BenchFerry> {
  const redis = await startPrivateRedis();
  const rt = createRuntime({ loaded: parseConfig(yaml, 'bench', {}), redisUrl: redis.url, log: silentLogger(), prefix });
  const deps = createFerry(rt, 'all', { env: {} });
  const workers = await startWorkers(deps);
  const conv: Conversation = { surface: 'console', session: 'bench', user: 'alice' };
  const run = async (text: string): Promise<void> => {
    await handleLine(deps, {
      text,
      user: 'alice',
      conv,
      channel: 'console',
      refuse: async (s) => {
        throw new Error(`refused: ${s}`);
      },
      answer: async (msg: Message) => inThread(conv, await deps.outbox.post(conv, msg)),
    });
  };
  return {
    deps,
    run,
    async planned(text) {
      const before = (await deps.ops.recent(1))[0]?.id ?? 0;
      await run(text);
      return until(async () => {
        const [op] = await deps.ops.recent(1);
        if (!op || op.id <= before) return undefined;
        if (FINISHED.includes(op.status)) throw new Error(`${text} ended ${op.status} before Start: ${op.summary}`);
        return op.params.stage === 'awaiting-start' ? op : undefined;
      });
    },
    async startAndWait(planned) {
      const t0 = performance.now();
      await run(`start ${planned.id}`);
      const op = await until(async () => {
        const o = await deps.ops.get(planned.id);
        return o && FINISHED.includes(o.status) ? o : undefined;
      });
      return { op, ms: performance.now() - t0 };
    },
    async close() {
      await workers.close();
      await deps.close();
      await rt.close();
      await redis.close();
    },
  };
}

/** Run main when this module is the script node was started with (not imported by run.ts). */
export function runAsScript(meta: ImportMeta, main: () => Promise<unknown>): void {
  if (!process.argv[1] || meta.url !== pathToFileURL(process.argv[1]).href) return;
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
