/**
 * Ferry's entry point: `ferry [console|web|worker|all]`.
 *   no argument: Slack app + worker when Slack tokens are set, else the console on the lab;
 *   web:     the Slack app (Socket Mode with SLACK_APP_TOKEN, else HTTP on PORT at /slack/events);
 *   worker:  the BullMQ workers;
 *   console: a terminal chat plus an in-process worker.
 */
import { loadConfig, ConfigError } from './config/load.js';
import { createLogger } from './log.js';
import { resolveRedisUrl } from './redis.js';
import { createRuntime } from './runtime.js';
import { createFerry, type Mode } from './ferry.js';
import { startWorkers, type WorkerSet } from './jobs/worker.js';
import { Health, healthRedisOptions, redisCheck } from './health.js';
import { loadDotEnv, readEnv } from './env.js';
import { assertRedisKeeps, RedisUnsafeError, UNSAFE_OVERRIDE } from './redis-keeps.js';

function pickMode(arg: string | undefined, env: NodeJS.ProcessEnv): Mode {
  if (arg === 'console' || arg === 'web' || arg === 'worker' || arg === 'all') return arg;
  if (arg) throw new ConfigError(`Unknown mode "${arg}": use console, web, worker or all.`);
  const slack = env.SLACK_BOT_TOKEN && (env.SLACK_APP_TOKEN || env.SLACK_SIGNING_SECRET);
  return slack ? 'all' : 'console';
}

async function main(): Promise<void> {
  const env = process.env;
  const envFile = loadDotEnv(env);
  const fenv = readEnv(env);
  const mode = pickMode(process.argv[2], env);
  // The console owns the terminal: logs go to stderr at warn unless LOG_LEVEL says otherwise.
  const log = createLogger(`ferry-${mode}`, fenv.logLevel ?? (mode === 'console' ? 'warn' : 'info'));
  // A bug that escapes every handler: logged, and the process exits non-zero for its supervisor.
  process.on('uncaughtException', (e) => {
    log.fatal({ err: e.stack ?? String(e) }, 'uncaught exception; exiting');
    process.exit(70);
  });
  process.on('unhandledRejection', (e) => {
    log.fatal({ err: e instanceof Error ? (e.stack ?? e.message) : String(e) }, 'unhandled promise rejection; exiting');
    process.exit(70);
  });
  const loaded = loadConfig(env);
  const { url } = await resolveRedisUrl(env, { launch: mode !== 'web' && mode !== 'worker' });
  const rt = createRuntime({ loaded, redisUrl: url, log });
  await rt.redis.ping();
  for (const warning of await assertRedisKeeps(rt.redis, env)) log.warn({ override: UNSAFE_OVERRIDE }, warning);
  const deps = createFerry(rt, mode, { env });
  log.info({ mode, config: loaded.source, hosts: loaded.inventory.hosts.length, ...(envFile ? { envFile } : {}) }, 'Ferry starting');

  let workers: WorkerSet | undefined;
  let stopWeb: (() => Promise<void>) | undefined;
  // One health implementation for every mode, on HEALTH_PORT only (never the Slack port).
  const health = new Health({ checkTimeoutMs: fenv.healthTimeoutMs });
  // Its own Redis connection: no offline queue and no retries, so an outage fails the PING at once.
  health.add('redis', redisCheck(rt.newConnection(healthRedisOptions(fenv.healthTimeoutMs))));
  const runsWorkers = mode === 'worker' || mode === 'all' || mode === 'console';
  if (runsWorkers) {
    health.add('workers', () => {
      if (!workers) throw new Error('workers are starting');
      const stopped = workers.workers.filter((w) => !w.isRunning()).map((w) => w.name);
      if (stopped.length) throw new Error(`workers not running: ${stopped.join(', ')}`);
      return `${workers.workers.length} queues`;
    });
  }
  rt.metrics.withProcessDefaults().withLiveGauges(
    {
      queueCounts: () =>
        Promise.all(deps.queues.all().map(async (q) => ({ queue: q.name, counts: await q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'waiting-children') }))),
      activeOperations: () => deps.ops.active(),
    },
    fenv.healthTimeoutMs,
  );
  if (fenv.healthPort !== undefined && mode !== 'console') {
    const port = await health.listen(fenv.healthPort, fenv.healthHost, rt.metrics);
    log.info({ port }, `health on :${port} (/livez, /readyz, /metrics)`);
  }

  const shutdown = async (signal: string) => {
    log.info({ signal }, 'shutting down: finishing running steps');
    await stopWeb?.().catch(() => undefined);
    // Stop taking jobs; running steps get SHUTDOWN_GRACE_MS, then their threads hear of the handover.
    await workers?.shutdown(fenv.shutdownGraceMs);
    await health.close();
    await deps.close();
    await rt.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));

  if (runsWorkers) {
    workers = await startWorkers(deps);
    log.info({ queues: workers.workers.map((w) => w.name), jobs: [...deps.wiring.jobs.keys()] }, 'workers ready');
  }

  if (mode === 'web' || mode === 'all') {
    if (!env.SLACK_BOT_TOKEN || (!env.SLACK_APP_TOKEN && !env.SLACK_SIGNING_SECRET)) {
      throw new ConfigError('The Slack app needs SLACK_BOT_TOKEN and either SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP).');
    }
    const { createSlackApp } = await import('./bot/slack/app.js');
    const port = fenv.port;
    const app = createSlackApp(deps, { botToken: env.SLACK_BOT_TOKEN, signingSecret: env.SLACK_SIGNING_SECRET, appToken: env.SLACK_APP_TOKEN, port, slackApiUrl: env.SLACK_API_URL, appId: env.SLACK_APP_ID, health });
    await app.start(port);
    stopWeb = () => app.stop() as Promise<void>;
    log.info({ port, socketMode: Boolean(env.SLACK_APP_TOKEN) }, env.SLACK_APP_TOKEN ? 'Slack app connected (Socket Mode)' : `Slack app listening on :${port}/slack/events`);
  }

  if (mode === 'console') {
    const { FerryConsole } = await import('./bot/console/console.js');
    const con = new FerryConsole(deps);
    await con.run();
    await con.close();
    await shutdown('end of input');
  }
}

main().catch((e: unknown) => {
  if (e instanceof ConfigError || e instanceof RedisUnsafeError) {
    process.stderr.write(`${e.message}\n`);
  } else {
    process.stderr.write(`Ferry could not start: ${e instanceof Error ? e.message : String(e)}\n`);
  }
  process.exit(1);
});
