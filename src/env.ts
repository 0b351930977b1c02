/**
 * The process environment: `.env` read when present (variables already set win), then every
 * variable Ferry reads validated once at start, each bad one named in one sentence.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { ConfigError } from './config/load.js';

/** Adds the variables of `<dir>/.env` (or ENV_FILE) that the environment does not set yet; returns the file read. */
export function loadDotEnv(env: NodeJS.ProcessEnv, dir = process.cwd()): string | undefined {
  const file = env.ENV_FILE ? path.resolve(dir, env.ENV_FILE) : path.join(dir, '.env');
  if (!fs.existsSync(file)) {
    if (env.ENV_FILE) throw new ConfigError(`ENV_FILE: ${file} does not exist.`);
    return undefined;
  }
  const parsed = parseEnv(fs.readFileSync(file, 'utf8'));
  for (const [k, v] of Object.entries(parsed)) if (env[k] === undefined || env[k] === '') env[k] = v;
  return file;
}

export interface FerryEnv {
  /** Slack HTTP receiver port. */
  port: number;
  /** Health/metrics port; undefined: not served. */
  healthPort?: number;
  healthHost?: string;
  /** Bound for each readiness check. */
  healthTimeoutMs: number;
  /** How long SIGTERM waits for running steps to finish or hand over. */
  shutdownGraceMs: number;
  logLevel?: string;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function int(env: NodeJS.ProcessEnv, name: string, lo: number, hi: number, what: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const n = Number(raw.trim());
  if (!Number.isInteger(n) || n < lo || n > hi) throw new ConfigError(`${name} must be ${what} (${lo}–${hi}), not "${raw}".`);
  return n;
}

/** Validates what Ferry reads from the environment; throws a ConfigError naming the first bad variable. */
export function readEnv(env: NodeJS.ProcessEnv): FerryEnv {
  const port = int(env, 'PORT', 1, 65535, 'a TCP port number') ?? 3000;
  const healthPort = int(env, 'HEALTH_PORT', 0, 65535, 'a TCP port number');
  if (healthPort !== undefined && healthPort !== 0 && healthPort === port && (env.SLACK_SIGNING_SECRET ?? '') !== '' && !env.SLACK_APP_TOKEN) {
    throw new ConfigError(`HEALTH_PORT must differ from PORT (${port}): health and metrics are not served on the public Slack port.`);
  }
  const healthTimeoutMs = int(env, 'HEALTH_TIMEOUT_MS', 50, 60_000, 'a number of milliseconds') ?? 2000;
  const shutdownGraceMs = int(env, 'SHUTDOWN_GRACE_MS', 0, 3_600_000, 'a number of milliseconds') ?? 25_000;
  // Read where they are used (src/redis-confirm.ts); checked here so a bad one is named at start.
  int(env, 'FERRY_REDIS_CONFIRM_REPLICAS', 0, 16, 'a number of replicas');
  int(env, 'FERRY_REDIS_WAIT_MS', 10, 60_000, 'a number of milliseconds');
  int(env, 'FERRY_REDIS_CONFIRM_MS', 1000, 600_000, 'a number of milliseconds');
  const logLevel = env.LOG_LEVEL?.trim() || undefined;
  if (logLevel && !LEVELS.includes(logLevel)) throw new ConfigError(`LOG_LEVEL must be one of ${LEVELS.join(', ')}, not "${logLevel}".`);
  for (const name of ['REDIS_URL', 'SLACK_API_URL']) {
    const v = env[name]?.trim();
    if (!v) continue;
    try {
      const u = new URL(v);
      if (name === 'REDIS_URL' && !['redis:', 'rediss:', 'unix:', 'redis+unix:'].includes(u.protocol)) throw new Error('scheme');
      if (name === 'SLACK_API_URL' && !['http:', 'https:'].includes(u.protocol)) throw new Error('scheme');
    } catch {
      const forms = name === 'REDIS_URL' ? 'redis://[user:password@]host:port[/db], rediss://… (TLS) or unix:///path' : 'an http(s):// URL';
      throw new ConfigError(`${name} must be ${forms}, not "${v}".`);
    }
  }
  const tokens: [string, RegExp, string][] = [
    ['SLACK_BOT_TOKEN', /^xoxb-/, 'a bot token starting with xoxb-'],
    ['SLACK_APP_TOKEN', /^xapp-/, 'an app-level token starting with xapp-'],
  ];
  for (const [name, re, what] of tokens) {
    const v = env[name];
    if (v && !re.test(v)) throw new ConfigError(`${name} must be ${what}.`);
  }
  const healthHost = env.HEALTH_HOST?.trim() || undefined;
  return { port, ...(healthPort !== undefined ? { healthPort } : {}), ...(healthHost ? { healthHost } : {}), healthTimeoutMs, shutdownGraceMs, ...(logLevel ? { logLevel } : {}) };
}
