/**
 * Runs before each test file (vitest setupFiles): measure the machine again as the file loads
 * (the run's figure was taken at its start, before the QEMU pair or a neighbour loaded it), scale
 * this file's backstop timeouts by the larger figure, and make a backstop that runs out say why.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, inject, vi } from 'vitest';
import { slowness } from './speed.js';

// Each process's memory of operation ids (src/jobs/epoch.ts) goes to a scratch directory, not
// the developer's ~/.local/state/ferry; Ferry processes a test starts inherit it.
// Removed when the file ends (after its own hooks have stopped what it started).
if (!process.env.FERRY_STATE_DIR) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-test-state-'));
  process.env.FERRY_STATE_DIR = dir;
  // A Ferry process the file started may still be writing there as it exits (ENOTEMPTY mid
  // removal): retry, and a scratch directory left behind is not a failure of the file's tests.
  afterAll(() => {
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    } catch (e) {
      console.warn(`could not remove ${dir}: ${e instanceof Error ? e.message : String(e)}`);
    }
  });
}

const s = slowness();
const idle = inject('idleTimeouts');
vi.setConfig({ testTimeout: Math.round(idle.test * s.factor), hookTimeout: Math.round(idle.hook * s.factor) });

// Vitest's own timeout message names the bound but not the scaling behind it.
afterEach(({ task }) => {
  for (const e of task.result?.errors ?? []) {
    if (/timed out in \d+ms/.test(e.message) && !e.message.includes('time bounds ×')) e.message = `${e.message}\n(backstop ${s.why})`;
  }
});
