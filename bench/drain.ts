/**
 * Drain benchmark: a lab host with 40 running HA VMs, a fixed time per live migration, at the
 * default concurrency of 2. Prints the time from Start to the summary and its ratio to the
 * ideal ceil(40 / 2) × migration time (1.00 would mean zero overhead per migration).
 * Redis is a private redis-server; messages go to a console session nobody reads.
 */
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
import { drainLabYaml, setHostVms } from '../test/support/drain-support.js';

const VMS = 40;
const MIGRATION_MS = 500;
const CONCURRENCY = 2;

export async function main(): Promise<Record<string, number>> {
  const redis = await startPrivateRedis();
  const loaded = parseConfig(drainLabYaml({ latencyMs: 5, migrationMs: MIGRATION_MS, concurrency: CONCURRENCY }), 'bench', {});
  const rt = createRuntime({ loaded, redisUrl: redis.url, log: silentLogger(), prefix: 'bench-drain' });
  const deps = createFerry(rt, 'all', { env: {} });
  const workers = await startWorkers(deps);
  const conv: Conversation = { surface: 'console', session: 'bench', user: 'alice' };
  const run = (text: string) =>
    handleLine(deps, {
      text,
      user: 'alice',
      conv,
      channel: 'console',
      refuse: async (s) => {
        throw new Error(`refused: ${s}`);
      },
      answer: async (msg: Message) => inThread(conv, await deps.outbox.post(conv, msg)),
    });
  const until = async (probe: () => Promise<Operation | undefined>): Promise<Operation> => {
    for (;;) {
      const op = await probe();
      if (op) return op;
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  try {
    await setHostVms(deps, 'hyp03', VMS, { memoryMiB: 4096 });
    await run('drain hyp03');
    const planned = await until(async () => {
      const [op] = await deps.ops.recent(1);
      return op?.params.stage === 'awaiting-start' ? op : undefined;
    });
    const t0 = performance.now();
    await run(`start ${planned.id}`);
    const done = await until(async () => {
      const op = await deps.ops.get(planned.id);
      return op && FINISHED.includes(op.status) ? op : undefined;
    });
    const ms = performance.now() - t0;
    const ideal = Math.ceil(VMS / CONCURRENCY) * MIGRATION_MS;
    const ratio = ms / ideal;
    console.log(
      `drain of ${VMS} VMs at concurrency ${CONCURRENCY}, ${MIGRATION_MS} ms per migration: ${done.status} (${done.summary}); ` +
        `Start to summary ${Math.round(ms)} ms, ideal ${ideal} ms, ratio ${ratio.toFixed(3)}`,
    );
    return { drain_40_ms: Math.round(ms), drain_40_ideal_ms: ideal, drain_40_ratio: Number(ratio.toFixed(3)) };
  } finally {
    await workers.close();
    await deps.close();
    await rt.close();
    await redis.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
