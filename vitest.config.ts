import { defineConfig } from 'vitest/config';
import { exportSlowness, slowness } from './test/support/speed.js';

/**
 * Two tiers, `npm test` runs both:
 * - unit (`npm run test:unit`): pure modules, nothing but Node: no Redis, no peers, no child
 *   processes. A new contributor's first answer, well under a minute.
 * - e2e (`npm run test:e2e`): everything else, over a private redis-server (globalSetup) and
 *   the real peers (sshd, virsh, vcsim…). A new test file lands here unless listed below.
 */
const UNIT = ['test/core/**/*.test.ts', 'test/architecture.test.ts', 'test/bot/grammar.test.ts', 'test/bot/render.test.ts', 'test/approvals/policy.test.ts', 'test/config.test.ts', 'test/adapters/vsphere-faults.test.ts'];

// Measured once per run and handed to the workers: a busy machine gets longer bounds, and the
// bounds say why (test/support/speed.ts).
const measuredHere = !process.env.FERRY_TEST_SLOWNESS;
const slow = exportSlowness(slowness());
if (measuredHere && slow.factor > 1) console.log(`ferry tests: ${slow.why}`);

// A test's own waits carry derived bounds and say what they waited for; these timeouts are only
// the backstop, one per tier, scaled the same way (no per-test timeout numbers in test files).
const scaled = (idleMs: number): number => Math.round(idleMs * slow.factor);

export default defineConfig({
  test: {
    testTimeout: scaled(30_000),
    hookTimeout: scaled(60_000),
    // Two cores: integration suites each start peers; keep parallelism modest.
    maxWorkers: 2,
    projects: [
      // No Redis here: a unit test that reaches for one fails instead of finding the shared 6379.
      { extends: true, test: { name: 'unit', include: UNIT, provide: { redisUrl: 'redis://unit-tier-has-no-redis.invalid:1' } } },
      {
        extends: true,
        test: { name: 'e2e', include: ['test/**/*.test.ts'], exclude: UNIT, globalSetup: ['test/support/global-redis.ts'], testTimeout: scaled(120_000), hookTimeout: scaled(120_000) },
      },
    ],
  },
});
