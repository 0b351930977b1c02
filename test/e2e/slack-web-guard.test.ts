/**
 * The web process under hostile requests (issue 13, item 5), as found: Ferry's `web` in its own
 * process with its real HTTP receiver, a local stand-in for the Slack Web API.
 *  - 20 unsigned 10 MB bodies: refused while streaming, the process does not grow;
 *  - a correctly signed body of `null`: refused, the process lives on;
 *  - a signed command or click from another workspace or app: nothing runs.
 */
import http from 'node:http';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { startFerry, type FerryProcess } from '../support/processes.js';
import { freePort } from '../support/net.js';
import { SIGNING_SECRET, interactionBody, postSigned, slashBody } from '../support/slack.js';
import { uniquePrefix } from '../support/harness.js';
import { Redis } from 'ioredis';
import { bound } from '../support/speed.js';

interface Call {
  method: string;
  body: string;
}

function slackStandIn(): Promise<{ url: string; calls: Call[]; close(): Promise<void> }> {
  const calls: Call[] = [];
  let seq = 1000;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const method = (req.url ?? '').replace(/^\/api\//, '');
      calls.push({ method, body });
      const out =
        method === 'auth.test'
          ? { ok: true, user_id: 'UFERRY', bot_id: 'BFERRY', team_id: 'T1', app_id: 'A1' }
          : method === 'chat.postMessage'
            ? { ok: true, channel: 'C0OPS', ts: `${++seq}.000100` }
            : { ok: true };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(out));
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      resolve({ url: `http://127.0.0.1:${port}/api/`, calls, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

describe('web process: hostile requests', () => {
  let web: FerryProcess;
  let slack: Awaited<ReturnType<typeof slackStandIn>>;
  let port: number;
  let healthPort: number;
  let redis: Redis;
  const prefix = uniquePrefix('guard');

  beforeAll(async () => {
    slack = await slackStandIn();
    port = await freePort();
    healthPort = await freePort();
    redis = new Redis(inject('redisUrl'));
    web = startFerry('web', {
      REDIS_URL: inject('redisUrl'),
      FERRY_PREFIX: prefix,
      PORT: String(port),
      HEALTH_PORT: String(healthPort),
      SLACK_BOT_TOKEN: 'xoxb-test',
      SLACK_SIGNING_SECRET: SIGNING_SECRET,
      SLACK_API_URL: slack.url,
    });
    await web.waitForLine(/listening/, 60_000);
  });

  afterAll(async () => {
    await web?.stop('SIGKILL');
    await slack?.close();
    await redis?.quit();
  });

  const ops = async () => Number((await redis.get(`${prefix}:op:seq`)) ?? 0);
  // Liveness is served on HEALTH_PORT (never on the public Slack port).
  const alive = async () => (await fetch(`http://127.0.0.1:${healthPort}/livez`)).status === 200;

  it('refuses oversized bodies before reading them whole; the process does not grow', async () => {
    const before = rssMiB(web.child.pid!);
    const big = 'x'.repeat(10 * 1024 * 1024);
    const statuses = await Promise.all(
      Array.from({ length: 20 }, () =>
        fetch(`http://127.0.0.1:${port}/slack/events`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: big })
          .then((r) => r.status)
          .catch(() => 413),
      ),
    );
    expect(statuses.every((s) => s === 413)).toBe(true);
    expect(await alive()).toBe(true);
    // 200 MB were sent; holding even a fraction of it would show.
    expect(rssMiB(web.child.pid!) - before).toBeLessThan(60);
  });

  it('a correctly signed body of null (or a JSON array) is refused and the process lives on', async () => {
    for (const body of ['null', '[]', '42']) {
      const res = await postSigned(port, body, { contentType: 'application/json' });
      expect(res.status).toBe(400);
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(web.child.exitCode).toBeNull();
    expect(await alive()).toBe(true);
    // And it still works.
    const before = await ops();
    expect((await postSigned(port, slashBody('find stale ports hyp01..hyp02'))).status).toBe(200);
    await expect.poll(ops, { timeout: bound(10_000) }).toBe(before + 1);
  });

  it('a signed command or click from another workspace or another app runs nothing', async () => {
    const before = await ops();
    const foreignTeam = slashBody('find stale ports hyp01..hyp03').replace('team_id=T1', 'team_id=T9EVIL');
    const foreignApp = slashBody('find stale ports hyp01..hyp03').replace('api_app_id=A1', 'api_app_id=A9EVIL');
    expect((await postSigned(port, foreignTeam)).status).toBe(200);
    expect((await postSigned(port, foreignApp)).status).toBe(200);
    const click = interactionBody({
      type: 'block_actions',
      team: { id: 'T9EVIL', domain: 'evil' },
      api_app_id: 'A1',
      user: { id: 'U0BOB', team_id: 'T9EVIL' },
      channel: { id: 'C0OPS' },
      trigger_id: `${Date.now()}.1`,
      message: { ts: '1.000100' },
      actions: [{ action_id: 'ferry:drain-cancel', value: '1', action_ts: `${Date.now()}.2`, type: 'button' }],
    });
    expect((await postSigned(port, click)).status).toBe(200);
    // The same command from Ferry's own workspace does run (so the two above were judged, not lost).
    expect((await postSigned(port, slashBody('find stale ports hyp01..hyp03'))).status).toBe(200);
    await expect.poll(ops, { timeout: bound(10_000) }).toBe(before + 1);
    await new Promise((r) => setTimeout(r, 500));
    expect(await ops()).toBe(before + 1);
    expect(slack.calls.filter((c) => c.method === 'chat.postEphemeral' && /T9EVIL|U0BOB/.test(c.body))).toEqual([]);
    expect(web.output()).toMatch(/another workspace or app refused/);
  });
});
