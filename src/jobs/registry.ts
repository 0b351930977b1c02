/**
 * Job handlers by name. Each workflow module registers its steps; src/jobs/worker.ts runs
 * whatever is registered, so adding a workflow never touches the worker.
 */
import type { Job } from 'bullmq';
import type { Deps } from './context.js';
import type { QueueName } from './queues.js';

export type JobHandler = (deps: Deps, job: Job) => Promise<unknown>;

interface Registration {
  queue: QueueName;
  handler: JobHandler;
}

const handlers = new Map<string, Registration>();

export function registerJob(name: string, queue: QueueName, handler: JobHandler): void {
  handlers.set(name, { queue, handler });
}

export function handlerFor(name: string): Registration | undefined {
  return handlers.get(name);
}

export function registeredJobs(): string[] {
  return [...handlers.keys()];
}

/** Work every worker process does once at start (job schedulers that must exist on a fresh deployment). */
type Startup = (deps: Deps) => Promise<void>;
const startups: Startup[] = [];

export function registerStartup(fn: Startup): void {
  startups.push(fn);
}

export function startupTasks(): readonly Startup[] {
  return startups;
}
