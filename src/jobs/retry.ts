/** Small helpers for adapter calls inside jobs: bounded retries of retryable faults, and deadlines. */
import { AdapterError } from '../adapters/types.js';

export async function withRetry<T>(fn: () => Promise<T>, opts: { attempts: number; backoffMs: number }): Promise<T> {
  let last: unknown;
  for (let i = 0; i < opts.attempts; i++) {
    try {
      return await fn();
    } catch (e) {
      last = e;
      const retryable = e instanceof AdapterError ? e.retryable : false;
      if (!retryable || i === opts.attempts - 1) throw e;
      await new Promise((r) => setTimeout(r, opts.backoffMs * 2 ** i));
    }
  }
  throw last;
}

/** Run with an AbortSignal that fires after ms; the error names what timed out. */
export async function withDeadline<T>(ms: number, what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ctl = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ctl.abort();
      reject(new Error(`${what} did not finish within ${Math.round(ms / 1000)}s`));
    }, ms);
  });
  try {
    return await Promise.race([fn(ctl.signal), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export function errorText(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
