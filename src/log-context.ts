/**
 * The job a piece of work belongs to, carried through async calls (AsyncLocalStorage) so that
 * a Slack call error deep in a workflow is logged with its job id without threading it through
 * every call.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export interface LogContext {
  jobId?: string;
  job?: string;
  opId?: number;
}

const storage = new AsyncLocalStorage<LogContext>();

export function withLogContext<T>(ctx: LogContext, fn: () => Promise<T>): Promise<T> {
  return storage.run(ctx, fn);
}

export function logContext(): LogContext {
  return storage.getStore() ?? {};
}
