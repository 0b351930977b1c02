/**
 * Readiness in Socket Mode (issue 15, "Health that tells the truth"): Ferry's `web` in its own
 * process, as in production with SLACK_APP_TOKEN, against the local Slack stand-in (Web API and
 * its Socket Mode WebSocket end, both on loopback through SLACK_API_URL). /readyz on HEALTH_PORT:
 *  - 503 naming Socket Mode while the socket is open but Slack has not said `hello`;
 *  - 200 with checks.socketMode ok once it has;
 *  - 503 naming Socket Mode after Slack drops the connection and refuses new ones;
 *  - 200 again once Slack takes connections again;
 * and a slash command delivered over the socket as an envelope is acked on it.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startFerry, type FerryProcess } from '../support/processes.js';
import { freePort } from '../support/net.js';
import { uniquePrefix } from '../support/harness.js';
import { startSlackStandin, type SlackStandin } from '../support/slack-standin.js';
import { timeBound } from '../support/speed.js';
import { eventually } from '../support/wait.js';

interface Readiness {
  status: number;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

describe('web process in Socket Mode: readiness follows the connection to Slack', () => {
  let web: FerryProcess;
  let slack: SlackStandin;
  let healthPort: number;
  let releaseHello: () => void;

  const readyz = async (): Promise<Readiness> => {
    const r = await fetch(`http://127.0.0.1:${healthPort}/readyz`);
    const body = (await r.json()) as { checks: Readiness['checks'] };
    return { status: r.status, checks: body.checks };
  };
  /** Not ready because of Socket Mode alone (Redis answering), or undefined. */
  const notReadyForSocket = async (): Promise<Readiness | undefined> => {
    const r = await readyz();
    return r.status === 503 && r.checks.socketMode?.ok === false && r.checks.redis?.ok === true ? r : undefined;
  };
  const readyWithSocket = async (): Promise<Readiness | undefined> => {
    const r = await readyz();
    return r.status === 200 && r.checks.socketMode?.ok === true ? r : undefined;
  };

  beforeAll(async () => {
    slack = await startSlackStandin();
    healthPort = await freePort();
    releaseHello = slack.socket.withholdHello();
    web = startFerry('web', {
      REDIS_URL: inject('redisUrl'),
      FERRY_PREFIX: uniquePrefix('socket'),
      PORT: String(await freePort()),
      HEALTH_PORT: String(healthPort),
      SLACK_BOT_TOKEN: 'xoxb-test',
      SLACK_APP_TOKEN: 'xapp-1-A1-test',
      SLACK_API_URL: slack.url,
    });
    await web.waitForLine(/health on :/, 60_000);
  });

  afterAll(async () => {
    await web?.stop('SIGKILL');
    await slack?.close();
  });

  it('is 503 until Slack says hello, 200 once it has, 503 while Slack refuses the socket, 200 when it is back', async () => {
    // The client asked Slack's Web API (the stand-in, through SLACK_API_URL) for the socket's URL and opened it.
    await eventually(() => slack.socket.open() === 1, 'the Socket Mode connection to the stand-in', 30_000);
    expect(slack.calls.some((c) => c.method === 'apps.connections.open')).toBe(true);
    const before = await readyz();
    expect(before.status).toBe(503);
    expect(before.checks.socketMode).toMatchObject({ ok: false, detail: expect.stringMatching(/Socket Mode is connecting/) });

    releaseHello();
    await web.waitForLine(/Slack app connected \(Socket Mode\)/, 10_000);
    expect((await readyz()).checks.socketMode).toMatchObject({ ok: true, detail: 'connected' });

    // Slack drops the connection and takes no new one: readiness stops saying connected at the
    // close, not one reconnect delay (clientPingTimeout, 5 s) later.
    const up = slack.socket.down();
    const down = await eventually(notReadyForSocket, '/readyz 503 naming Socket Mode after the drop', 2000);
    expect(down.checks.socketMode!.detail).toMatch(/Socket Mode is (disconnected|reconnecting|connecting)/);
    // Still not ready while the client's attempts are refused.
    await eventually(() => slack.socket.refused() > 0, 'a reconnect attempt refused by the stand-in', 15_000);
    expect(await notReadyForSocket()).toBeTruthy();

    up();
    // The next attempt (one reconnect delay later) gets through and Slack says hello.
    await eventually(readyWithSocket, '/readyz 200 once Slack takes the socket again', 20_000);
    expect(slack.socket.open()).toBe(1);
  });

  it('acks a slash command delivered over the socket as an envelope', async () => {
    await eventually(readyWithSocket, 'Socket Mode connected', 20_000);
    slack.socket.send({
      type: 'slash_commands',
      envelope_id: 'env-help-1',
      accepts_response_payload: true,
      payload: {
        token: 'legacy',
        team_id: 'T1',
        team_domain: 'acme',
        channel_id: 'C0OPS',
        channel_name: 'ops',
        user_id: 'U0ALICE',
        user_name: 'alice',
        command: '/ferry',
        text: 'help',
        api_app_id: 'A1',
        response_url: `${slack.responseUrl}1/2`,
        trigger_id: '1.2',
      },
    });
    const limit = timeBound(3000);
    const ack = await Promise.race([
      slack.socket.receivedWhere((m) => m.envelope_id === 'env-help-1'),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no ack for the envelope within ${limit.ms} ms (${limit.why})`)), limit.ms).unref()),
    ]);
    // Ferry answers help in the ack itself (Slack shows it to the sender).
    expect(ack.payload).toMatchObject({ response_type: 'ephemeral', text: 'Ferry commands' });
  });
});
