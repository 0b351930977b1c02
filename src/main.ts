/**
 * Ferry's entry point: `ferry [console|web|worker|all]`.
 *   no argument: Slack app + worker when Slack tokens are set, else the console on the lab;
 *   web:     the Slack app (Socket Mode with SLACK_APP_TOKEN, else HTTP on PORT at /slack/events);
 *   worker:  the BullMQ workers;
 *   console: a terminal chat plus an in-process worker.
 */
import http from 'node:http';
import { loadConfig, ConfigError } from './config/load.js';
import { createLogger } from './log.js';
import { resolveRedisUrl } from './redis.js';
import { createRuntime } from './runtime.js';
import { createFerry, type Mode } from './ferry.js';
import { startWorkers, type WorkerSet } from './jobs/worker.js';
import { metricsText } from './health.js';

function pickMode(arg: string | undefined, env: NodeJS.ProcessEnv): Mode {
  if (arg === 'console' || arg === 'web' || arg === 'worker' || arg === 'all') return arg;
  if (arg) throw new ConfigError(`Unknown mode "${arg}": use console, web, worker or all.`);
  const slack = env.SLACK_BOT_TOKEN && (env.SLACK_APP_TOKEN || env.SLACK_SIGNING_SECRET);
  return slack ? 'all' : 'console';
}

async function main(): Promise<void> {
  const env = process.env;
  const mode = pickMode(process.argv[2], env);
  // The console owns the terminal: logs go to stderr at warn unless LOG_LEVEL says otherwise.
  const log = createLogger(`ferry-${mode}`, env.LOG_LEVEL ?? (mode === 'console' ? 'warn' : 'info'));
  const loaded = loadConfig(env);
  const { url } = await resolveRedisUrl(env, { launch: mode !== 'web' && mode !== 'worker' });
  const rt = createRuntime({ loaded, redisUrl: url, log });
  await rt.redis.ping();
  const deps = createFerry(rt, mode, { env });
  log.info({ mode, config: loaded.source, hosts: loaded.inventory.hosts.length }, 'Ferry starting');

  let workers: WorkerSet | undefined;
  let stopWeb: (() => Promise<void>) | undefined;
  let healthServer: http.Server | undefined;

  const shutdown = async (signal: string) => {
    log.info({ signal }, 'shutting down: finishing running steps');
    await stopWeb?.().catch(() => undefined);
    await workers?.close();
    healthServer?.close();
    await deps.close();
    await rt.close();
    process.exit(0);
  };
  // One request or job gone wrong is logged; it does not take the process (and every other request) down.
  process.on('unhandledRejection', (e) => log.error({ err: e instanceof Error ? e.stack : String(e) }, 'unhandled error (logged; Ferry carries on)'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));

  if (mode === 'worker' || mode === 'all' || mode === 'console') {
    workers = await startWorkers(deps);
    log.info({ queues: workers.workers.map((w) => w.name), jobs: [...deps.wiring.jobs.keys()] }, 'workers ready');
  }

  if (mode === 'worker' && env.HEALTH_PORT) {
    healthServer = http.createServer(async (req, res) => {
      if (req.url === '/metrics') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(await metricsText(deps));
      } else {
        const ok = (await rt.redis.ping().catch(() => 'down')) === 'PONG';
        res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok, workers: workers?.workers.length ?? 0 }));
      }
    });
    healthServer.listen(Number(env.HEALTH_PORT));
  }

  if (mode === 'web' || mode === 'all') {
    if (!env.SLACK_BOT_TOKEN || (!env.SLACK_APP_TOKEN && !env.SLACK_SIGNING_SECRET)) {
      throw new ConfigError('The Slack app needs SLACK_BOT_TOKEN and either SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP).');
    }
    const { createSlackApp } = await import('./bot/slack/app.js');
    const port = Number(env.PORT ?? 3000);
    const app = createSlackApp(deps, { botToken: env.SLACK_BOT_TOKEN, signingSecret: env.SLACK_SIGNING_SECRET, appToken: env.SLACK_APP_TOKEN, port, slackApiUrl: env.SLACK_API_URL, appId: env.SLACK_APP_ID });
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
  if (e instanceof ConfigError) {
    process.stderr.write(`${e.message}\n`);
  } else {
    process.stderr.write(`Ferry could not start: ${e instanceof Error ? e.message : String(e)}\n`);
  }
  process.exit(1);
});
