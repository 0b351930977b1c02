/**
 * A job that runs out of attempts on a fault its workflow did not expect: the operation ends
 * as failed, the thread says what stopped and what state it left, and the host is unlocked.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { drainLabYaml, hostState, setHostVms, vmName } from '../support/drain-support.js';
import { pauseRun, readRun, rollingStep, type HostCycle } from '../../src/jobs/patch/rolling.js';
import { workflowCycle } from '../../src/jobs/patch/cycle.js';
import { scanWindows, WindowStore } from '../../src/jobs/workflows/patch-windows.js';
import { FINISHED } from '../../src/jobs/operations.js';
import { renderCard } from '../../src/jobs/cards.js';
import { renderText } from '../../src/bot/render/text.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import { readLock } from '../../src/jobs/drain/locks.js';

let h: Harness;
afterEach(async () => {
  await h?.close();
});

describe('give up cleanly', () => {
  it('a drain whose host refuses maintenance ends failed, reported, and unlocked', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    await setHostVms(h.deps, 'hyp04', 4);
    const op = await h.planned('drain hyp04');
    await setLabFault(h.rt.redis, h.rt.prefix, 'hyp04', 'fail:maintenance');
    await h.run(`start ${op.id}`);
    const done = await h.waitForOp(op.id, 30_000);
    expect(done.status).toBe('failed');
    // The operation is marked failed before the thread is told: wait for the sentence.
    const said = new RegExp(`job ${op.id} stopped after \\d attempts at "drain-exec": hyp04: maintenance failed \\(injected fault\\)\\. Nothing more will run for it`);
    await h.waitFor(async () => said.test(h.transcript()), 'the give-up sentence');
    expect(await readLock(h.rt, 'hyp04')).toBeNull();
    // Every VM is still where it was: nothing half-moved.
    expect((await h.rt.adapters.forHost('hyp04').listVms('hyp04')).length).toBe(4);
    await setLabFault(h.rt.redis, h.rt.prefix, 'hyp04', null);
  });
  it('a drain given up mid-way ends with a card that shows the failure, not "draining"', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    await setHostVms(h.deps, 'hyp03', 4);
    const bad = vmName('hyp03', 2);
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${bad}`, 'migrate-fail');
    const op = await h.planned('drain hyp03 rollback hold');
    await h.run(`start ${op.id}`);
    await h.waitFor(async () => (await h.deps.ops.get(op.id))?.params.stage === 'held', 'the hold');
    // The retry's step cannot read the host any more: it throws until its attempts are used up.
    await setLabFault(h.rt.redis, h.rt.prefix, 'hyp03', 'fail:describe');
    await h.run(`retry ${op.id}`);
    const done = await h.waitForOp(op.id, 30_000);
    expect(done.status).toBe('failed');
    expect(done.params.stage).toBe('done');
    const card = renderText(await renderCard(h.deps, done));
    expect(card).not.toMatch(/draining/);
    expect(card).toMatch(/Drain hyp03\* · job \d+ · failed|Drain hyp03 · job \d+ · failed/);
    await setLabFault(h.rt.redis, h.rt.prefix, 'hyp03', null);
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${bad}`, null);
  });
  it('a rolling run whose own step gives up is finished: no buttons, later kicks do nothing, the drained host is named', async () => {
    let now = Date.UTC(2030, 6, 1, 8, 0);
    // The run's step throws once the drain has finished (the host is drained, in maintenance),
    // on every attempt: the give-up path ends the run.
    const breaking: HostCycle = {
      ...workflowCycle,
      async nudge(deps, opId, req) {
        const d = await deps.ops.get(opId);
        if (d && FINISHED.includes(d.status)) throw new Error('injected: the run step broke');
        await workflowCycle.nudge!(deps, opId, req);
      },
    };
    h = await makeHarness({
      yaml: `${drainLabYaml()}approvals:\n  rolling-run: {approvals: 0}\npatchWindows:\n  hook: {manual: true}\n  scanInterval: 1h\n`,
      clock: { now: () => now },
      adjust: (workflows, chat) => ({ workflows: workflows.map((w) => (w.hostCycle ? { ...w, hostCycle: breaking } : w)), chat }),
    });
    await setHostVms(h.deps, 'hyp04', 3);
    await h.run('patch window hyp04 at 2030-07-01 10:00 UTC for 4h rolling');
    await h.waitFor(async () => (await new WindowStore(h.rt).get('1')) !== null, 'window 1');
    now = Date.UTC(2030, 6, 1, 10, 0, 5);
    await scanWindows(h.deps);
    const w = await h.waitFor(async () => {
      const x = await new WindowStore(h.rt).get('1');
      return x?.runOpId ? x : undefined;
    }, 'the run to start');
    const runId = w.runOpId!;
    const op = await h.waitForOp(runId, 40_000);
    expect(op.status).toBe('failed');
    await h.waitFor(async () => h.transcript().includes('hyp04 is still drained; restore hyp04 brings its VMs home'), 'the sentence about hyp04');
    const s = (await readRun(h.deps, runId))!;
    expect(s.finished?.status).toBe('failed');
    expect(s.hosts[0]!.status).not.toBe('running');
    const card = renderText(await renderCard(h.deps, (await h.deps.ops.get(runId))!));
    expect(card).not.toMatch(/pause run|abort run/);
    // A later kick or control changes nothing.
    const before = JSON.stringify(await readRun(h.deps, runId));
    const posts = h.events.length;
    await rollingStep(h.deps, runId);
    expect(JSON.stringify(await readRun(h.deps, runId))).toBe(before);
    const r = await pauseRun(h.deps, { opId: runId, user: 'bob', groupMembers: {} }, true);
    expect(r.refused).toBe(true);
    // Anything either call posted was published before it returned: after the barrier it would show.
    await h.sync();
    expect(h.events.length).toBe(posts);
    expect((await hostState(h.rt, 'hyp04')).facts.maintenance).toBe(true);
  });
});
