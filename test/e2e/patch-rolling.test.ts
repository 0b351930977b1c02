/**
 * A rolling run on the lab, end to end through the console grammar: window → start → approval
 * (a request in the approvals store, like every other action)
 * → one host at a time: drain (the drain workflow) → manual patch hook (typed "done") → restore
 * (the restore workflow) → every VM home → next host. One injected failure with
 * maxFailedHosts 1: the others are still patched, in order, and the run ends with a per-host
 * report and every VM on its home host.
 */
import { renderText } from '../../src/bot/render/text.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeHarness, fastLabYaml, type Harness } from '../support/harness.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import { scanWindows, WindowStore } from '../../src/jobs/workflows/patch-windows.js';
import { readRun } from '../../src/jobs/patch/rolling.js';
import { ApprovalStore } from '../../src/approvals/store.js';
import { drainableHosts, vmHomes } from '../support/patch-support.js';

/** Four hosts of prod-a whose drain the prechecks allow (no running non-HA VM), found at start. */
const HOSTS: string[] = [];
const base = Date.UTC(2030, 6, 1, 8, 0);
let now = base;
let h: Harness;

beforeAll(async () => {
  h = await makeHarness({
    yaml: fastLabYaml('patchWindows:\n  maxFailedHosts: 1\n  hook: {manual: true}\n  scanInterval: 1h\n', { latencyMs: 2, migrationMs: 40 }),
    clock: { now: () => now },
  });
  HOSTS.push(...(await drainableHosts(h, 4)));
});
afterAll(async () => h.close());


describe('rolling run on the lab', () => {
  it('patches the hosts in order around one injected failure and ends with every VM home', async () => {
    const before = await vmHomes(h, HOSTS);
    // The injected failure: one running VM of hyp02 cannot migrate, so hyp02's drain fails
    // and rolls back (rollback auto): what moved comes back and hyp02 leaves maintenance.
    const [first, second, third, fourth] = HOSTS as [string, string, string, string];
    const victim = (await h.rt.adapters.forHost(second).listVms(second)).find((v) => v.power === 'running')!;
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${victim.name}`, 'migrate-fail');

    await h.run(`patch window ${HOSTS.join(',')} at 2030-07-01 10:00 UTC for 4h note "KB5031234" rolling`);
    await h.waitFor(async () => (await new WindowStore(h.rt).get('1')) !== null, 'window 1');
    now = Date.UTC(2030, 6, 1, 10, 0, 5);
    await scanWindows(h.deps);
    const w = await h.waitFor(async () => {
      const x = await new WindowStore(h.rt).get('1');
      return x?.runOpId ? x : undefined;
    }, 'the run to start');
    const runId = w.runOpId!;
    await h.waitFor(async () => new RegExp(`needs 1 approval.*"approve run ${runId}"`).test(h.transcript()), 'the approval request');

    // The run's approval is a request in the approvals store (its card, expiry sweep, claim);
    // `approve run <job>` is an alias of `approve <request>`.
    const reqId = (await readRun(h.deps, runId))!.approvalId!;
    expect(reqId).toMatch(/^\d+$/);
    await h.waitForText(`"approve ${reqId}"`);
    // The requester cannot approve their own run (either spelling); an approver can.
    await h.run(`approve run ${runId}`, 'alice');
    const refusal = await h.waitFor(async () => h.ephemerals('alice').at(-1), 'the self-approval refusal');
    expect(refusal).toMatch(/someone else has to approve it/);
    await h.run(`approve ${reqId}`, 'alice');
    await h.waitFor(async () => h.ephemerals('alice').length >= 2, 'the second self-approval refusal');
    expect(h.ephemerals('alice').at(-1)).toMatch(/someone else has to approve it/);
    expect((await readRun(h.deps, runId))!.approved).toBe(false);
    await h.run(`approve ${reqId}`, 'bob');
    await h.waitFor(async () => (await new ApprovalStore(h.rt).get(reqId))?.request.status === 'executed', 'the run to claim its approval');

    // Manual hook: answer "done" whenever a drained host waits for its patch.
    const order: string[] = [];
    const final = await h.waitFor(
      async () => {
        const s = await readRun(h.deps, runId);
        if (!s) return undefined;
        const waiting = s.hosts.find((x) => x.status === 'running' && x.phase === 'patching' && !x.patchDone);
        if (waiting) {
          order.push(waiting.host);
          await h.run(`done ${runId}`, 'carol');
        }
        return s.finished ? s : undefined;
      },
      'the run to finish',
      100_000,
    );

    const byHost = Object.fromEntries(final.hosts.map((x) => [x.host, x]));
    expect(order).toEqual([first, third, fourth]);
    expect(byHost[first]!.status).toBe('succeeded');
    expect(byHost[second]!.status).toBe('failed');
    expect(byHost[second]!.error).toMatch(/drain job \d+ (failed|partial)/);
    expect(byHost[third]!.status).toBe('succeeded');
    expect(byHost[fourth]!.status).toBe('succeeded');
    // Hosts ran one at a time, in order.
    const started = final.hosts.map((x) => x.startedAtMs ?? 0);
    expect([...started].sort((a, b) => a - b)).toEqual(started);
    expect(final.finished?.status).toBe('partial');
    expect(final.finished?.message).toMatch(/finished with failures: 3 patched, 1 failed/);

    // Every VM is back on its home host, and nobody is left in maintenance.
    expect(await vmHomes(h, HOSTS)).toEqual(before);
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${victim.name}`, null);
    for (const host of HOSTS) expect((await h.rt.adapters.forHost(host).describeHost(host)).maintenance).toBe(false);

    // The per-host report in the thread.
    const t = h.transcript();
    expect(t).toMatch(/Rolling run \d+ \(patch window 1\): The run finished with failures/);
    expect(t).toMatch(new RegExp(`${second}\\s+failed\\s+1`));
    expect(t).toMatch(new RegExp(`${first} is drained, patch it and click Done`));

    // One thread per run, the run card at its head: the approval request, each host's drain and
    // restore cards, the hook prompts and the report are replies in it, none top-level.
    const posts = h.events.filter((e): e is Extract<(typeof h.events)[number], { kind: 'post' }> => e.kind === 'post');
    const cardRef = (await h.deps.ops.get(runId))!.cardRef!;
    const card = posts.find((e) => e.ref.ts === cardRef.ts);
    expect(card, 'the run card').toBeDefined();
    expect(card!.threadTs).toBeUndefined();
    const seq = (ts: string) => Number(ts.replace(/\D/g, ''));
    // The window's own announcements go where the window was recorded, not into the run.
    const runPosts = posts.filter((e) => seq(e.ref.ts) > seq(cardRef.ts) && !/^Patch window \d+ (starts|has started|has ended)/.test(renderText(e.message)));
    const loose = runPosts.filter((e) => e.threadTs !== cardRef.ts).map((e) => renderText(e.message).split('\n')[0]);
    expect(loose).toEqual([]);
    expect(runPosts.some((e) => /Drain hyp/.test(renderText(e.message)))).toBe(true);
    expect(runPosts.some((e) => /The run finished with failures/.test(renderText(e.message)))).toBe(true);
  });
});
