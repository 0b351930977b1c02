/**
 * What a workflow contributes to the job side of Ferry, as one value: its jobs, its status
 * card, its decisions (start/rollback/retry/skip), its give-up hook, its approval handlers,
 * its start-up tasks and the patch-window hooks it listens on. Nothing registers itself on
 * import: the composition root (src/ferry.ts) lists every workflow's descriptor and builds
 * one Wiring from them, the same in every process, so a worker can run every job a web
 * process enqueues.
 */
import type { Job } from 'bullmq';
import type { Deps } from './context.js';
import type { QueueName } from './queues.js';
import type { Operation } from './operations.js';
import type { Message } from '../chat/messages.js';
import type { Controlled } from './drain/control.js';
import type { ApprovalHandler } from '../approvals/service.js';
import type { ApprovalAction } from '../approvals/policy.js';
import type { HostCycle } from './patch/rolling.js';
import type { PatchWindow } from './patch/store.js';

export type JobHandler = (deps: Deps, job: Job) => Promise<unknown>;

export interface JobSpec {
  queue: QueueName;
  handler: JobHandler;
}

export type CardRenderer = (deps: Deps, op: Operation) => Promise<Message>;

/**
 * What a kind of operation must settle itself when its job gives up (state of its own beyond
 * the operation record, e.g. a rolling run's run state). Called after the operation is marked
 * failed, so no step of it goes on; returns sentences for the thread about what it left.
 */
export type GiveUpHook = (deps: Deps, op: Operation, why: string) => Promise<string[] | void>;

/** Work every worker process does once at start (job schedulers that must exist on a fresh deployment). */
export type Startup = (deps: Deps) => Promise<void>;

export interface Workflow {
  name: string;
  /** Job name -> queue and handler. */
  jobs?: Record<string, JobSpec>;
  /** Operation kind -> its card. */
  cards?: Record<string, CardRenderer>;
  /** Operation kind -> its decisions while it waits (drain, migrate). */
  controlled?: Record<string, Controlled>;
  /** Operation kind -> what it settles when its job gives up. */
  giveUp?: Record<string, GiveUpHook>;
  approvals?: Partial<Record<ApprovalAction, ApprovalHandler<never>>>;
  startup?: Startup[];
  /** A rolling patch window reached its start (one workflow may own it). */
  rollingStart?: (deps: Deps, w: PatchWindow) => Promise<void>;
  /** The drain/restore seam a rolling run uses (one workflow may own it). */
  hostCycle?: HostCycle;
  /** Patch windows changed (App Home refresh); must not throw or wait. */
  windowsChanged?: (deps: Deps) => void;
  /** Extra work for the patch windows' catch-up scan. */
  scan?: (deps: Deps) => Promise<void>;
}

export interface Wiring {
  readonly workflows: readonly string[];
  readonly jobs: ReadonlyMap<string, JobSpec>;
  readonly cards: ReadonlyMap<string, CardRenderer>;
  readonly controlled: ReadonlyMap<string, Controlled>;
  readonly giveUp: ReadonlyMap<string, GiveUpHook>;
  readonly approvals: ReadonlyMap<ApprovalAction, ApprovalHandler<never>>;
  readonly startup: readonly Startup[];
  readonly rollingStart?: (deps: Deps, w: PatchWindow) => Promise<void>;
  readonly hostCycle?: HostCycle;
  readonly windowsChanged: readonly ((deps: Deps) => void)[];
  readonly scan: readonly ((deps: Deps) => Promise<void>)[];
}

function merge<K, V>(into: Map<K, V>, from: Partial<Record<K & string, V>> | undefined, what: string, owner: string): void {
  for (const [k, v] of Object.entries(from ?? {}) as [K & string, V][]) {
    // Two workflows claiming one name is a wiring mistake; say so at start, not at the first job.
    if (into.has(k)) throw new Error(`${what} "${k}" is claimed twice (again by ${owner})`);
    into.set(k, v);
  }
}

function single<T>(current: T | undefined, next: T | undefined, what: string, owner: string): T | undefined {
  if (next === undefined) return current;
  if (current !== undefined) throw new Error(`${what} is claimed twice (again by ${owner})`);
  return next;
}

/** One Wiring from the listed workflows; a name claimed twice is an error. */
export function wireJobs(workflows: readonly Workflow[]): Wiring {
  const jobs = new Map<string, JobSpec>();
  const cards = new Map<string, CardRenderer>();
  const controlled = new Map<string, Controlled>();
  const giveUp = new Map<string, GiveUpHook>();
  const approvals = new Map<ApprovalAction, ApprovalHandler<never>>();
  let rollingStart: Wiring['rollingStart'];
  let hostCycle: HostCycle | undefined;
  for (const w of workflows) {
    merge(jobs, w.jobs, 'job', w.name);
    merge(cards, w.cards, 'card of kind', w.name);
    merge(controlled, w.controlled, 'decisions of kind', w.name);
    merge(giveUp, w.giveUp, 'give-up hook of kind', w.name);
    merge(approvals, w.approvals, 'approval handler of', w.name);
    rollingStart = single(rollingStart, w.rollingStart, 'the rolling start', w.name);
    hostCycle = single(hostCycle, w.hostCycle, 'the host cycle', w.name);
  }
  return {
    workflows: workflows.map((w) => w.name),
    jobs,
    cards,
    controlled,
    giveUp,
    approvals,
    startup: workflows.flatMap((w) => w.startup ?? []),
    rollingStart,
    hostCycle,
    windowsChanged: workflows.flatMap((w) => (w.windowsChanged ? [w.windowsChanged] : [])),
    scan: workflows.flatMap((w) => (w.scan ? [w.scan] : [])),
  };
}
