/**
 * A job that runs out of attempts on a fault its workflow did not expect: the operation ends
 * as failed, the thread says what stopped and what state it left, and the host is unlocked.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { drainLabYaml, setHostVms } from './drain-support.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import { readLock } from '../../src/jobs/drain/locks.js';

let h: Harness;
afterAll(() => h?.close());

describe('give up cleanly', () => {
  it('a drain whose host refuses maintenance ends failed, reported, and unlocked', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    await setHostVms(h.deps, 'hyp04', 4);
    await h.run('drain hyp04');
    const op = await h.waitFor(async () => {
      const [o] = await h.deps.ops.recent(1);
      return o?.params.stage === 'awaiting-start' ? o : undefined;
    }, 'the drain plan');
    await setLabFault(h.rt.redis, h.rt.prefix, 'hyp04', 'fail:maintenance');
    await h.run(`start ${op.id}`);
    const done = await h.waitForOp(op.id, 30_000);
    expect(done.status).toBe('failed');
    expect(h.transcript()).toMatch(new RegExp(`job ${op.id} stopped after \\d attempts at "drain-exec": hyp04: maintenance failed \\(injected fault\\)\\. Nothing more will run for it`));
    expect(await readLock(h.rt, 'hyp04')).toBeNull();
    // Every VM is still where it was: nothing half-moved.
    expect((await h.rt.adapters.forHost('hyp04').listVms('hyp04')).length).toBe(4);
    await setLabFault(h.rt.redis, h.rt.prefix, 'hyp04', null);
  });
});
