import 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    /** The tier's backstop test and hook timeouts on an idle machine (per-file.ts scales them). */
    idleTimeouts: { test: number; hook: number };
  }
}
