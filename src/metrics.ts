/**
 * Ferry's Prometheus metrics (prom-client), one registry per runtime so a test's runtimes never
 * share counters. Process defaults are added by the process that serves /metrics (main.ts);
 * queue depths and operations by status are read from Redis at scrape time, within a bound.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What a scrape needs to read the live gauges; kept small so this module stays at the edge. */
export interface MetricsSources {
  queueCounts(): Promise<{ queue: string; counts: Record<string, number> }[]>;
  activeOperations(): Promise<{ kind: string; status: string }[]>;
}

const SLOW = [0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200];

export class Metrics {
  readonly registry = new Registry();
  readonly ackSeconds = new Histogram({
    name: 'ferry_slack_ack_seconds',
    help: 'Time from a Slack request reaching Ferry’s listeners to its ack, by kind (command, event, action, view).',
    labelNames: ['kind'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5],
    registers: [this.registry],
  });
  readonly jobSeconds = new Histogram({
    name: 'ferry_job_duration_seconds',
    help: 'BullMQ job run time by job kind and outcome (done, failed, delayed).',
    labelNames: ['kind', 'outcome'] as const,
    buckets: [0.01, 0.05, 0.1, ...SLOW],
    registers: [this.registry],
  });
  readonly migrationSeconds = new Histogram({
    name: 'ferry_migration_duration_seconds',
    help: 'One VM migration call by adapter and outcome (ok, failed).',
    labelNames: ['adapter', 'outcome'] as const,
    buckets: SLOW,
    registers: [this.registry],
  });
  readonly slackCalls = new Counter({
    name: 'ferry_slack_calls_total',
    help: 'Slack Web API calls made, by method.',
    labelNames: ['method'] as const,
    registers: [this.registry],
  });
  readonly slackRateLimited = new Counter({
    name: 'ferry_slack_rate_limited_total',
    help: 'Slack Web API calls answered 429 (rate limited), by method.',
    labelNames: ['method'] as const,
    registers: [this.registry],
  });
  readonly operationsFinished = new Counter({
    name: 'ferry_operations_finished_total',
    help: 'Operations that reached a final status in this process, by kind and status.',
    labelNames: ['kind', 'status'] as const,
    registers: [this.registry],
  });
  private defaults = false;
  private sources = false;

  /** Node's process metrics (CPU, memory, event loop lag, handles, GC); once per registry. */
  withProcessDefaults(): this {
    if (!this.defaults) collectDefaultMetrics({ register: this.registry });
    this.defaults = true;
    return this;
  }

  /** Gauges read from Redis when scraped; a read slower than timeoutMs leaves them out of that scrape. */
  withLiveGauges(src: MetricsSources, timeoutMs = 2000): this {
    if (this.sources) return this;
    this.sources = true;
    const scrapeErrors = new Counter({
      name: 'ferry_metrics_scrape_errors_total',
      help: 'Scrapes whose Redis-backed gauges could not be read in time (Redis down or slow).',
      labelNames: ['gauge'] as const,
      registers: [this.registry],
    });
    new Gauge({
      name: 'ferry_queue_jobs',
      help: 'Jobs per queue and state.',
      labelNames: ['queue', 'state'] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        try {
          for (const q of await withTimeout(src.queueCounts(), timeoutMs, 'queue depths')) {
            for (const [state, n] of Object.entries(q.counts)) this.labels(q.queue, state).set(n);
          }
        } catch {
          scrapeErrors.labels('ferry_queue_jobs').inc();
        }
      },
    });
    new Gauge({
      name: 'ferry_operations',
      help: 'Operations not yet finished, by kind and status.',
      labelNames: ['kind', 'status'] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        try {
          for (const op of await withTimeout(src.activeOperations(), timeoutMs, 'operations')) this.labels(op.kind, op.status).inc();
        } catch {
          scrapeErrors.labels('ferry_operations').inc();
        }
      },
    });
    return this;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Rejects after ms with "<what> did not answer within <ms> ms"; the promise itself is left to settle. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
