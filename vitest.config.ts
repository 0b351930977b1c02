import { defineConfig } from 'vitest/config';
import { measureRun } from './test/support/speed.js';

/**
 * Two tiers, `npm test` runs both:
 * - unit (`npm run test:unit`): pure modules, nothing but Node: no Redis, no peers, no child
 *   processes. A new contributor's first answer, well under a minute.
 * - e2e (`npm run test:e2e`): everything else, over a private redis-server (globalSetup) and
 *   the real peers (sshd, virsh, vcsim…). A new test file lands here unless listed below.
 */
const UNIT = ['test/core/**/*.test.ts', 'test/architecture.test.ts', 'test/bot/grammar.test.ts', 'test/bot/render.test.ts', 'test/approvals/policy.test.ts', 'test/config.test.ts', 'test/adapters/vsphere-faults.test.ts', 'test/support/speed.test.ts'];

// Measured at the start of the run and handed to the workers; each file measures again when it
// loads and keeps the larger (test/support/speed.ts, test/support/per-file.ts): a busy machine
// gets longer bounds, and the bounds say why.
const measuredHere = !process.env.FERRY_TEST_SLOWNESS;
const slow = measureRun();
if (measuredHere && slow.factor > 1) console.log(`ferry tests: ${slow.why}`);

// A test's own waits carry derived bounds and say what they waited for; these timeouts are only
// the backstop, one per tier, idle figures here, scaled per file by per-file.ts (no per-test
// timeout numbers in test files).
const idle = { unit: { test: 30_000, hook: 60_000 }, e2e: { test: 120_000, hook: 120_000 } };
const scaled = (idleMs: number): number => Math.round(idleMs * slow.factor);

export default defineConfig({
  test: {
    testTimeout: scaled(idle.unit.test),
    hookTimeout: scaled(idle.unit.hook),
    setupFiles: ['test/support/per-file.ts'],
    // Two cores: integration suites each start peers; keep parallelism modest.
    maxWorkers: 2,
    projects: [
      // No Redis here: a unit test that reaches for one fails instead of finding the shared 6379.
      { extends: true, test: { name: 'unit', include: UNIT, provide: { redisUrl: 'redis://unit-tier-has-no-redis.invalid:1', idleTimeouts: idle.unit } } },
      {
        extends: true,
        test: { name: 'e2e', include: ['test/**/*.test.ts'], exclude: UNIT, globalSetup: ['test/support/global-redis.ts'],
          provide: { idleTimeouts: idle.e2e },
          testTimeout: scaled(idle.e2e.test),
          hookTimeout: scaled(idle.e2e.hook),
        },
      },
    ],
  },
});
