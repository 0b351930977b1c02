/**
 * Slack stand-ins for tests: nock plays the Web API (SLACK_API_URL=http://slack.test/api/),
 * and signed requests go to Ferry's real HTTP receiver.
 */
import crypto from 'node:crypto';
import nock from 'nock';
import { freePort } from './net.js';

export const SLACK_API_URL = 'http://slack.test/api/';
export const SIGNING_SECRET = 'test-signing-secret-0123456789abcdef';

export interface SlackCall {
  method: string;
  body: Record<string, unknown>;
  at: number;
}

/** Records every Web API call; chat.postMessage answers with increasing ts values. */
export function mockSlackApi(opts: { failWith?: Record<string, string> } = {}): { calls: SlackCall[]; done(): void } {
  const calls: SlackCall[] = [];
  let seq = 1000;
  nock.enableNetConnect(/127\.0\.0\.1|localhost/);
  const scope = nock('http://slack.test')
    .persist()
    .post(/\/api\/.*/)
    .reply(function (uri, raw) {
      const method = uri.replace('/api/', '');
      let body: Record<string, unknown> = {};
      if (typeof raw === 'string') {
        const params = new URLSearchParams(raw);
        for (const [k, v] of params) {
          try {
            body[k] = k === 'blocks' || k === 'view' ? JSON.parse(v) : v;
          } catch {
            body[k] = v;
          }
        }
      } else body = raw as Record<string, unknown>;
      calls.push({ method, body, at: Date.now() });
      const fail = opts.failWith?.[method];
      if (fail) return [200, { ok: false, error: fail }];
      if (method === 'chat.postMessage') return [200, { ok: true, channel: body.channel, ts: `${++seq}.000100` }];
      if (method === 'chat.update') return [200, { ok: true, channel: body.channel, ts: body.ts }];
      if (method === 'auth.test') return [200, { ok: true, user_id: 'UFERRY', bot_id: 'BFERRY', team_id: 'T1' }];
      return [200, { ok: true }];
    });
  return {
    calls,
    done() {
      scope.persist(false);
      nock.cleanAll();
    },
  };
}

export function sign(body: string, ts = Math.floor(Date.now() / 1000), secret = SIGNING_SECRET): Record<string, string> {
  const sig = `v0=${crypto.createHmac('sha256', secret).update(`v0:${ts}:${body}`).digest('hex')}`;
  return { 'x-slack-signature': sig, 'x-slack-request-timestamp': String(ts) };
}


export function slashBody(text: string, opts: { user?: string; channel?: string; triggerId?: string; responseUrl?: string } = {}): string {
  return new URLSearchParams({
    token: 'legacy',
    team_id: 'T1',
    team_domain: 'acme',
    channel_id: opts.channel ?? 'C0OPS',
    channel_name: 'ops',
    user_id: opts.user ?? 'U0ALICE',
    user_name: 'alice',
    command: '/ferry',
    text,
    api_app_id: 'A1',
    response_url: opts.responseUrl ?? 'http://slack.test/commands/1/2',
    trigger_id: opts.triggerId ?? `${Date.now()}.${Math.floor(Math.random() * 1e6)}`,
  }).toString();
}

export function interactionBody(payload: Record<string, unknown>): string {
  return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
}

/** A click on one of Ferry's buttons, as Slack sends it: alice in #ops by default. */
export function buttonBody(actionId: string, value: string, triggerId: string, opts: { user?: string; channel?: string; messageTs?: string; responseUrl?: string } = {}): string {
  return interactionBody({
    // Slack sends one with every click on a message's button; tests that read the answer there pass it.
    ...(opts.responseUrl ? { response_url: opts.responseUrl } : {}),
    type: 'block_actions',
    token: 'legacy',
    api_app_id: 'A1',
    team: { id: 'T1' },
    user: { id: opts.user ?? 'U0ALICE' },
    channel: { id: opts.channel ?? 'C0OPS' },
    message: { ts: opts.messageTs ?? '1700000001.000100' },
    trigger_id: triggerId,
    actions: [{ type: 'button', action_id: actionId, value, action_ts: `${Date.now() / 1000}` }],
  });
}

export async function postSigned(port: number, body: string, opts: { contentType?: string; headers?: Record<string, string>; signature?: Record<string, string> | null } = {}): Promise<{ status: number; ms: number; text: string }> {
  const started = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}/slack/events`, {
    method: 'POST',
    headers: {
      'content-type': opts.contentType ?? 'application/x-www-form-urlencoded',
      ...(opts.signature === null ? {} : (opts.signature ?? sign(body))),
      ...opts.headers,
    },
    body,
  });
  const text = await res.text();
  return { status: res.status, ms: performance.now() - started, text };
}

/** Visible text of a recorded call: its fallback text plus every section/context text. */
export function callText(c: SlackCall): string {
  const blocks = (c.body.blocks as { text?: { text?: string }; elements?: { text?: string }[]; fields?: { text: string }[] }[] | undefined) ?? [];
  return [String(c.body.text ?? ''), ...blocks.flatMap((b) => [b.text?.text ?? '', ...(b.elements ?? []).map((e) => e.text ?? ''), ...(b.fields ?? []).map((f) => f.text)])].join('\n');
}

export { freePort };
