/**
 * A Ferry worker in its own process, for the SIGKILL resume test: builds the runtime and deps
 * from FERRY_TEST_YAML / REDIS_URL / FERRY_PREFIX and runs every worker with short stall
 * timings, so a job of a killed worker is re-run within seconds.
 */
import { parseConfig } from '../../src/config/load.js';
import { createRuntime } from '../../src/runtime.js';
import { createFerry } from '../../src/ferry.js';
import { startWorkers } from '../../src/jobs/worker.js';
import { createLogger } from '../../src/log.js';

const loaded = parseConfig(process.env.FERRY_TEST_YAML ?? '', 'test', {});
const rt = createRuntime({ loaded, redisUrl: process.env.REDIS_URL!, // Its log goes to stdout, which DrainWorkers keeps the tail of for a failing test to show.
  log: createLogger('drain-worker', process.env.FERRY_TEST_WORKER_LOG ?? 'info'), prefix: process.env.FERRY_PREFIX! });
const deps = createFerry(rt, 'worker', { env: {} });
await startWorkers(deps, { lockDurationMs: Number(process.env.FERRY_TEST_LOCK_MS ?? 1500), stalledIntervalMs: Number(process.env.FERRY_TEST_STALLED_MS ?? 500) });
process.stdout.write('ready\n');
