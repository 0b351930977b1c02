/**
 * Health for every Ferry process (web, worker, all), on its own port (HEALTH_PORT), never on the
 * public Slack port:
 *   GET /livez   liveness: the process answers and its event loop is not stalled;
 *   GET /readyz  readiness: every check (Redis, Socket Mode, workers…) passed within its bound;
 *   GET /healthz the same as /readyz;
 *   GET /metrics Prometheus text (prom-client).
 * Each check runs with a timeout, so a Redis outage answers 503 within the bound instead of
 * hanging on a queued command.
 */
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Redis, RedisOptions } from 'ioredis';
import type { Metrics } from './metrics.js';
import { withTimeout } from './metrics.js';

/** A readiness check: resolves (optionally with a detail) when fine, throws a sentence when not. */
export type Check = () => Promise<string | void> | string | void;

export interface CheckResult {
  ok: boolean;
  ms: number;
  detail?: string;
}

export interface HealthOptions {
  /** Bound for each readiness check. */
  checkTimeoutMs?: number;
  /** Event loop delay above which the process is not live. */
  maxLagMs?: number;
  /** A rendered /metrics answer is reused this long (concurrent scrapes always share one). */
  metricsReuseMs?: number;
}

export class Health {
  private readonly checks = new Map<string, Check>();
  private readonly lag: ReturnType<typeof monitorEventLoopDelay>;
  private server?: http.Server;
  readonly checkTimeoutMs: number;
  readonly maxLagMs: number;
  readonly metricsReuseMs: number;
  private scrape?: { at: number; text: Promise<string> };

  constructor(opts: HealthOptions = {}) {
    this.checkTimeoutMs = opts.checkTimeoutMs ?? 2000;
    this.maxLagMs = opts.maxLagMs ?? 5000;
    this.metricsReuseMs = opts.metricsReuseMs ?? 1000;
    this.lag = monitorEventLoopDelay({ resolution: 20 });
    this.lag.enable();
  }

  add(name: string, check: Check): this {
    this.checks.set(name, check);
    return this;
  }

  /** Live unless the event loop stalled past maxLagMs since the previous probe. */
  liveness(): { ok: boolean; eventLoopLagMs: number; uptimeS: number } {
    const lagMs = Math.round(this.lag.max / 1e6);
    this.lag.reset();
    return { ok: lagMs <= this.maxLagMs, eventLoopLagMs: lagMs, uptimeS: Math.round(process.uptime()) };
  }

  async readiness(): Promise<{ ok: boolean; checks: Record<string, CheckResult> }> {
    const entries = await Promise.all(
      [...this.checks].map(async ([name, check]): Promise<[string, CheckResult]> => {
        const t0 = performance.now();
        try {
          const detail = await withTimeout(Promise.resolve().then(check), this.checkTimeoutMs, name);
          return [name, { ok: true, ms: Math.round(performance.now() - t0), ...(detail ? { detail } : {}) }];
        } catch (e) {
          return [name, { ok: false, ms: Math.round(performance.now() - t0), detail: e instanceof Error ? e.message : String(e) }];
        }
      }),
    );
    return { ok: entries.every(([, r]) => r.ok), checks: Object.fromEntries(entries) };
  }

  /** Serve /livez, /readyz, /healthz and /metrics on port (0: any free port). */
  async listen(port: number, host: string | undefined, metrics?: Metrics): Promise<number> {
    const server = http.createServer((req, res) => {
      const send = (status: number, body: unknown, type = 'application/json') => {
        res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
        res.end(typeof body === 'string' ? body : JSON.stringify(body));
      };
      const url = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, { error: 'GET only' });
      if (url === '/livez') {
        const l = this.liveness();
        return send(l.ok ? 200 : 503, { status: l.ok ? 'live' : 'stalled', ...l });
      }
      if (url === '/readyz' || url === '/healthz') {
        void this.readiness().then((r) => send(r.ok ? 200 : 503, { status: r.ok ? 'ready' : 'not ready', checks: r.checks }));
        return;
      }
      if (url === '/metrics' && metrics) {
        void this.metricsText(metrics).then(
          (text) => send(200, text, metrics.registry.contentType),
          (e: unknown) => send(500, `# metrics failed: ${e instanceof Error ? e.message : String(e)}\n`, 'text/plain'),
        );
        return;
      }
      send(404, { error: 'not found: /livez, /readyz, /healthz, /metrics' });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const addr = server.address();
    return typeof addr === 'object' && addr ? addr.port : port;
  }

  /**
   * 300 concurrent scrapes each rendering the registry and reading Redis pushed a Slack ack in
   * the same process to 2 s (issue 13, item 9): scrapes in flight share one rendering, and it
   * is reused for metricsReuseMs (Prometheus scrapes every 15-60 s, so nothing is lost).
   */
  private metricsText(metrics: Metrics): Promise<string> {
    const last = this.scrape;
    if (last && performance.now() - last.at < this.metricsReuseMs) return last.text;
    const text = metrics.text();
    const entry = { at: performance.now(), text };
    this.scrape = entry;
    // A failed rendering is not reused; the answer it gave settles after every waiter has it.
    text.then(
      () => (entry.at = performance.now()),
      () => {
        if (this.scrape === entry) this.scrape = undefined;
      },
    );
    return text;
  }

  async close(): Promise<void> {
    this.lag.disable();
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/** Options for the health check's own Redis connection: a command during an outage fails at once (no offline queue, no retries) or at the bound. */
export function healthRedisOptions(timeoutMs: number): RedisOptions {
  return { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: timeoutMs };
}

/**
 * Readiness of Redis on its own connection (offline queue off, so a command during an outage
 * fails at once instead of queueing): PING must answer PONG.
 */
export function redisCheck(conn: Redis): Check {
  // Errors surface through the check's result; without a listener ioredis prints each one.
  conn.on('error', () => undefined);
  return async () => {
    const t0 = performance.now();
    const pong = await conn.ping();
    if (pong !== 'PONG') throw new Error(`Redis answered ${pong} to PING`);
    return `PING ${Math.round(performance.now() - t0)} ms`;
  };
}
