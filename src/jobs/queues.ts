/**
 * BullMQ queues. `ops`: one job per operation (workflow parents, long-running drains);
 * `hosts`: per-host children of fan-outs, with a global concurrency bound shared by every
 * worker; `cards`: trailing status-card refreshes; `timers`: scheduled work (patch windows,
 * approval expiry).
 */
import { FlowProducer, Queue, type ConnectionOptions } from 'bullmq';
import type { Runtime } from '../runtime.js';

export const QUEUE_NAMES = ['ops', 'hosts', 'cards', 'timers'] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

export function bullConnection(rt: Runtime): ConnectionOptions {
  return rt.newConnection();
}

export class Queues {
  readonly ops: Queue;
  readonly hosts: Queue;
  readonly cards: Queue;
  readonly timers: Queue;
  readonly flow: FlowProducer;

  constructor(readonly rt: Runtime) {
    const connection = rt.newConnection();
    const opts = { connection, prefix: `${rt.prefix}:bull` };
    this.ops = new Queue('ops', opts);
    this.hosts = new Queue('hosts', opts);
    this.cards = new Queue('cards', opts);
    this.timers = new Queue('timers', opts);
    this.flow = new FlowProducer(opts);
  }

  byName(name: QueueName): Queue {
    return this[name];
  }

  all(): Queue[] {
    return [this.ops, this.hosts, this.cards, this.timers];
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.all().map((q) => q.close()), this.flow.close()]);
  }
}
