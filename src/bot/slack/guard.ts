/**
 * What reaches Bolt's HTTP receiver. Slack's payloads are small: a body over the bound is
 * refused (413) while it streams in, before anything holds it whole or checks its signature.
 * A body that is JSON but not an object (a signed `null` made Bolt's receiver throw outside any
 * handler and kill the process) is refused with 400. Events, commands and clicks from another
 * workspace or app than Ferry's own are acked and dropped.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HTTPReceiver, Middleware, AnyMiddlewareArgs } from '@slack/bolt';
import type { Logger } from '../../log.js';
import type { InFlight } from './in-flight.js';

/** Slack's largest payloads (a view submission, a click on a long message) stay well under this. */
export const MAX_BODY_BYTES = 1024 * 1024;

function refuse(res: ServerResponse, status: number, text: string): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' });
  res.end(text);
}

/** The request's body as a JSON object, or why it is not one ('' when it need not be). */
function notAnObject(raw: string, contentType: string | undefined): string {
  let text = raw;
  if (contentType?.startsWith('application/x-www-form-urlencoded')) {
    const payload = new URLSearchParams(raw).get('payload');
    if (payload === null) return '';
    text = payload;
  }
  else if (!contentType?.startsWith('application/json')) return '';
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? '' : 'the body is not a JSON object';
  } catch {
    return 'the body is not JSON';
  }
}

/** `inFlight` counts each request on the Slack path from its arrival until its response is written (the ack). */
export function guardReceiver(receiver: HTTPReceiver, log: Logger, opts: { path?: string; maxBytes?: number; inFlight?: InFlight } = {}): void {
  const { path = '/slack/events', maxBytes = MAX_BODY_BYTES, inFlight } = opts;
  const inner = receiver.requestListener;
  receiver.requestListener = (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'POST' || (req.url ?? '').split('?')[0] !== path) return inner(req, res);
    if (inFlight) {
      const end = inFlight.begin();
      res.once('finish', end);
      res.once('close', end);
    }
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) {
      log.warn({ bytes: declared, limit: maxBytes }, 'Slack endpoint: body over the limit refused');
      refuse(res, 413, 'body too large');
      req.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > maxBytes) {
        over = true;
        log.warn({ limit: maxBytes }, 'Slack endpoint: body over the limit refused');
        refuse(res, 413, 'body too large');
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      if (over) return;
      const raw = Buffer.concat(chunks);
      const why = notAnObject(raw.toString('utf8'), req.headers['content-type']);
      if (why) {
        log.warn({ why }, 'Slack endpoint: malformed body refused');
        refuse(res, 400, why);
        return;
      }
      // Bolt reads a body already buffered here instead of the stream.
      (req as IncomingMessage & { rawBody?: Buffer }).rawBody = raw;
      try {
        inner(req, res);
      } catch (e) {
        log.error({ err: e }, 'Slack endpoint: the receiver failed on a request');
        refuse(res, 500, 'error');
      }
    });
  };
}

/** The workspace (and Enterprise org) a delivery comes from, and the app it is for. */
function origin(body: Record<string, unknown>): { team?: string; enterprise?: string; app?: string } {
  const team = body.team as { id?: string; enterprise_id?: string } | undefined;
  const user = body.user as { team_id?: string } | undefined;
  const enterprise = body.enterprise as { id?: string } | undefined;
  const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
  return {
    team: str(body.team_id) ?? str(team?.id) ?? str(user?.team_id),
    enterprise: str(body.enterprise_id) ?? str(enterprise?.id) ?? str(team?.enterprise_id),
    app: str(body.api_app_id),
  };
}

/**
 * Only Ferry's own workspace (or Enterprise org) and app: `expect` resolves to what auth.test
 * said (and SLACK_APP_ID / auth.test's app_id for the app, when known).
 */
export function sameWorkspaceOnly(expect: () => Promise<{ teamId?: string; enterpriseId?: string; appId?: string }>, log: Logger): Middleware<AnyMiddlewareArgs> {
  return async (args) => {
    const body = args.body as unknown as Record<string, unknown>;
    const from = origin(body);
    // Not known yet (auth.test failing): Bolt's own authorize has the say on that.
    const own = await expect().catch(() => ({}) as { teamId?: string; enterpriseId?: string; appId?: string });
    const teamOk = !from.team || !own.teamId || from.team === own.teamId || (Boolean(from.enterprise) && from.enterprise === own.enterpriseId);
    const appOk = !own.appId || !from.app || from.app === own.appId;
    // A delivery that names no team at all is not Slack's (every payload carries one).
    if (!from.team && !from.enterprise) {
      log.warn({ type: body.type }, 'Slack delivery without a team refused');
    } else if (teamOk && appOk) {
      await args.next();
      return;
    } else {
      log.warn({ team: from.team, app: from.app, ownTeam: own.teamId, ownApp: own.appId }, 'Slack delivery from another workspace or app refused; nothing was run');
    }
    const maybeAck = (args as { ack?: () => Promise<void> }).ack;
    if (maybeAck) await maybeAck();
  };
}
