/** Ferry processes for tests: the real entry point (src/main.ts) in a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bound, timeBound } from './speed.js';
import { SIGNING_SECRET } from './slack.js';

export interface FerryProcess {
  child: ChildProcess;
  output(): string;
  /** idleMs: an idle-machine bound, scaled by the slowness measured when the wait starts. */
  waitForLine(re: RegExp, idleMs?: number): Promise<string>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const root = path.resolve(import.meta.dirname, '../..');

export function writeConfig(yaml: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-cfg-'));
  const file = path.join(dir, 'ferry.yml');
  fs.writeFileSync(file, yaml);
  return file;
}

export function startFerry(mode: string, env: NodeJS.ProcessEnv, opts: { stdin?: string } = {}): FerryProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/main.ts'), mode], {
    cwd: root,
    // The suite's private Redis persists nothing on purpose; Ferry's start-up check would refuse it.
    env: { ...process.env, LOG_LEVEL: 'info', FERRY_ALLOW_UNSAFE_REDIS: '1', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  if (opts.stdin !== undefined) child.stdin!.end(opts.stdin);
  return {
    child,
    output: () => out,
    waitForLine(re, idleMs = 30_000) {
      const limit = timeBound(idleMs);
      return new Promise((resolve, reject) => {
        const deadline = setTimeout(() => reject(new Error(`timed out after ${limit.ms} ms waiting for ${re} (${limit.why}) in:\n${out}`)), limit.ms);
        const check = () => {
          const m = out.split('\n').find((l) => re.test(l));
          if (m) {
            clearTimeout(deadline);
            child.stdout!.off('data', check);
            resolve(m);
          } else if (child.exitCode !== null) {
            clearTimeout(deadline);
            reject(new Error(`process exited (${child.exitCode}) before ${re}:\n${out}`));
          }
        };
        child.stdout!.on('data', check);
        child.on('exit', check);
        check();
      });
    },
    stop(signal = 'SIGTERM') {
      // Already gone (exited, or killed by a signal): nothing to wait for.
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
      return new Promise((resolve) => {
        child.once('exit', (code) => resolve(code));
        child.kill(signal);
      });
    },
  };
}

/**
 * The Procfile's shape: `web` and `worker` on one environment. Both are returned at once, so a
 * start that fails can still be stopped; `ready` settles once both say they are.
 */
/**
 * The environment of a Ferry process serving Slack over HTTP on `port` against the stand-in Web
 * API at `slackUrl`, with its Redis, key prefix and configuration; `extra` adds or overrides.
 */
export function slackHttpEnv(o: { redisUrl: string; prefix: string; yaml: string; slackUrl: string; port: number; extra?: NodeJS.ProcessEnv }): NodeJS.ProcessEnv {
  return {
    REDIS_URL: o.redisUrl,
    FERRY_PREFIX: o.prefix,
    FERRY_CONFIG: writeConfig(o.yaml),
    SLACK_BOT_TOKEN: 'xoxb-test',
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_API_URL: o.slackUrl,
    PORT: String(o.port),
    ...o.extra,
  };
}

export function startWebAndWorker(env: NodeJS.ProcessEnv): { web: FerryProcess; worker: FerryProcess; ready: Promise<void> } {
  const web = startFerry('web', env);
  const worker = startFerry('worker', env);
  const ready = Promise.all([web.waitForLine(/Slack app listening/, bound(60_000)), worker.waitForLine(/workers ready/, bound(60_000))]).then(() => undefined);
  return { web, worker, ready };
}
