/** What every job handler and command handler gets: the runtime, queues, operations, outbox. */
import type { Runtime } from '../runtime.js';
import type { SurfaceRouter } from '../chat/surface-router.js';
import type { Queues } from './queues.js';
import type { Operations } from './operations.js';
import type { Wiring } from './wiring.js';

export interface Deps {
  rt: Runtime;
  queues: Queues;
  ops: Operations;
  /** Posts, updates and ephemerals, routed to the conversation's surface. */
  outbox: SurfaceRouter;
  /** Every workflow's jobs, cards, decisions and hooks, built once by src/ferry.ts. */
  wiring: Wiring;
}
