/** The environment: `.env` read when present (set variables win) and each variable validated by name. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDotEnv, readEnv } from '../src/env.js';

describe('readEnv', () => {
  it('defaults', () => {
    expect(readEnv({})).toEqual({ port: 3000, healthTimeoutMs: 2000, shutdownGraceMs: 25_000 });
  });
  it.each([
    [{ PORT: '0' }, 'PORT must be a TCP port number (1–65535), not "0".'],
    [{ PORT: '80.5' }, 'PORT must be a TCP port number (1–65535), not "80.5".'],
    [{ HEALTH_PORT: 'x' }, 'HEALTH_PORT must be a TCP port number (0–65535), not "x".'],
    [{ PORT: '3000', HEALTH_PORT: '3000', SLACK_SIGNING_SECRET: 's' }, 'HEALTH_PORT must differ from PORT (3000): health and metrics are not served on the public Slack port.'],
    [{ SHUTDOWN_GRACE_MS: '-1' }, 'SHUTDOWN_GRACE_MS must be a number of milliseconds (0–3600000), not "-1".'],
    [{ FERRY_REDIS_WAIT_MS: 'soon' }, 'FERRY_REDIS_WAIT_MS must be a number of milliseconds (10–60000), not "soon".'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, not "loud".'],
    [{ REDIS_URL: 'localhost:6379' }, 'REDIS_URL must be redis://[user:password@]host:port[/db], rediss://… (TLS) or unix:///path, not "localhost:6379".'],
    [{ SLACK_API_URL: 'ftp://x' }, 'SLACK_API_URL must be an http(s):// URL, not "ftp://x".'],
    [{ SLACK_BOT_TOKEN: 'xapp-1' }, 'SLACK_BOT_TOKEN must be a bot token starting with xoxb-.'],
    [{ SLACK_APP_TOKEN: 'xoxb-1' }, 'SLACK_APP_TOKEN must be an app-level token starting with xapp-.'],
  ])('%o → %s', (env, sentence) => {
    expect(() => readEnv(env)).toThrow(sentence);
  });
  it('accepts good values', () => {
    expect(readEnv({ PORT: '8080', HEALTH_PORT: '9090', SHUTDOWN_GRACE_MS: '5000', REDIS_URL: 'rediss://ferry:pw@redis:6380/0', LOG_LEVEL: 'debug' })).toMatchObject({ port: 8080, healthPort: 9090, shutdownGraceMs: 5000, logLevel: 'debug' });
  });
});

describe('loadDotEnv', () => {
  it('adds the variables of .env that are not set, and leaves the set ones alone', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-env-'));
    fs.writeFileSync(path.join(dir, '.env'), '# comment\nPORT=4000\nLOG_LEVEL=debug\nSLACK_API_URL="http://127.0.0.1:9/api/"\n');
    const env: NodeJS.ProcessEnv = { LOG_LEVEL: 'warn' };
    expect(loadDotEnv(env, dir)).toBe(path.join(dir, '.env'));
    expect(env).toEqual({ LOG_LEVEL: 'warn', PORT: '4000', SLACK_API_URL: 'http://127.0.0.1:9/api/' });
    expect(loadDotEnv({}, os.tmpdir() + '/nonexistent-ferry')).toBeUndefined();
    expect(() => loadDotEnv({ ENV_FILE: 'missing.env' }, dir)).toThrow(`ENV_FILE: ${path.join(dir, 'missing.env')} does not exist.`);
    fs.rmSync(dir, { recursive: true });
  });
});
