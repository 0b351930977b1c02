/** What every job handler and command handler gets: the runtime, queues, operations, outbox. */
import type { Runtime } from '../runtime.js';
import type { Outbox } from '../bot/outbox.js';
import type { Queues } from './queues.js';
import type { Operations } from './operations.js';
import type { Wiring } from './wiring.js';

export interface Deps {
  rt: Runtime;
  queues: Queues;
  ops: Operations;
  outbox: Outbox;
  /** Every workflow's jobs, cards, decisions and hooks, built once by src/ferry.ts. */
  wiring: Wiring;
}
