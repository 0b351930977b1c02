/**
 * A rolling run on the lab with a COMMAND patch hook: after each drain Ferry runs the hook on
 * the host through its adapter (runCommand), posts the outcome in the thread and audits it. One
 * host's hook fails (lab fault fail:hook, exit 1) with maxFailedHosts 1: that host's VMs are
 * brought home and it counts as failed, the others are patched in order, and the per-host report
 * says which hook failed and why.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeHarness, fastLabYaml, type Harness } from '../support/harness.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import { scanWindows, WindowStore } from '../../src/jobs/workflows/patch-windows.js';
import { readRun } from '../../src/jobs/patch/rolling.js';
import { queryAudit } from '../../src/audit/audit.js';
import type { Job } from 'bullmq';
import { drainableHosts, vmHomes } from '../support/patch-support.js';

const HOSTS: string[] = [];
// Near real time: the audit stream's ids are Redis server time and it trims by the clock's retention.
let now = Date.now();
const start = Math.ceil((now + 2 * 86_400_000) / 3_600_000) * 3_600_000;
const at = `${new Date(start).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
let h: Harness;

beforeAll(async () => {
  h = await makeHarness({
    yaml: fastLabYaml('patchWindows:\n  maxFailedHosts: 1\n  hook: {command: "/usr/local/sbin/patch-host --reboot {host}", timeout: 10m}\n  scanInterval: 1h\n', { latencyMs: 2, migrationMs: 40 }),
    clock: { now: () => now },
  });
  HOSTS.push(...(await drainableHosts(h, 3)));
});
afterAll(async () => h.close());


describe('rolling run with a command patch hook', () => {
  it('runs the hook on each drained host; a failed hook fails its host, the others are patched', async () => {
    expect(HOSTS).toHaveLength(3);
    const [first, second, third] = HOSTS as [string, string, string];
    const before = await vmHomes(h, HOSTS);
    await setLabFault(h.rt.redis, h.rt.prefix, second, 'fail:hook');
    // The first host's calls are slow, so its hook runs long enough (3 × 250 ms) to be seen running.
    await setLabFault(h.rt.redis, h.rt.prefix, first, 'slow:250');

    await h.run(`patch window ${HOSTS.join(',')} at ${at} for 4h rolling`);
    const recorded = await h.waitFor(async () => /Patch window 1 recorded/.test(h.transcript()) && h.transcript(), 'window 1');
    expect(recorded).toContain('patches (hook /usr/local/sbin/patch-host --reboot {host})');
    now = start + 5_000;
    await scanWindows(h.deps);
    const w = await h.waitFor(async () => {
      const x = await new WindowStore(h.rt).get('1');
      return x?.runOpId ? x : undefined;
    }, 'the run to start');
    const runId = w.runOpId!;
    await h.waitFor(async () => new RegExp(`needs 1 approval.*"approve run ${runId}"`).test(h.transcript()), 'the approval request');
    await h.run(`approve run ${runId}`, 'bob');

    // While a hook runs there is nothing to click: "done" is refused with a reason.
    await h.waitFor(async () => (await readRun(h.deps, runId))?.hosts.some((x) => x.hook?.jobId && !x.hook.outcome), 'a hook to be running', 60_000);
    await h.run(`done ${runId}`, 'carol');
    const refusal = await h.waitFor(async () => h.ephemerals('carol').at(-1), 'the refusal of done');
    expect(refusal).toBe(`${first} is patched by the command hook (patchWindows.hook), not by hand; the run goes on when the hook ends.`);

    const final = await h.waitFor(async () => {
      const s = await readRun(h.deps, runId);
      return s?.finished ? s : undefined;
    }, 'the run to finish', 100_000);

    const byHost = Object.fromEntries(final.hosts.map((x) => [x.host, x]));
    expect(byHost[first]!.status).toBe('succeeded');
    expect(byHost[third]!.status).toBe('succeeded');
    expect(byHost[second]!.status).toBe('failed');
    expect(byHost[second]!.error).toMatch(new RegExp(`^patch hook exited 1 after \\S+: \\[lab ${second}\\] error: the patch failed \\(injected fault fail:hook\\)$`));
    expect(byHost[second]!.hook?.command).toBe(`/usr/local/sbin/patch-host --reboot ${second}`);
    expect(byHost[first]!.log.join(' | ')).toMatch(/patched \(hook exited 0 after/);
    const started = final.hosts.map((x) => x.startedAtMs ?? 0);
    expect([...started].sort((a, b) => a - b)).toEqual(started);
    expect(final.finished?.status).toBe('partial');
    expect(final.finished?.message).toMatch(/finished with failures: 2 patched, 1 failed/);

    // Every VM home, nobody left in maintenance (the failed host was restored).
    expect(await vmHomes(h, HOSTS)).toEqual(before);
    for (const host of HOSTS) expect((await h.rt.adapters.forHost(host).describeHost(host)).maintenance).toBe(false);
    await setLabFault(h.rt.redis, h.rt.prefix, second, null);
    await setLabFault(h.rt.redis, h.rt.prefix, first, null);

    // The thread: the hook started with its command, each outcome with exit code, output and duration, the report.
    const t = h.transcript();
    expect(t).not.toMatch(/patch it and click Done/);
    expect(t).toContain(`${first} is drained; running the patch hook (timeout 10m): /usr/local/sbin/patch-host --reboot ${first}`);
    expect(t).toMatch(new RegExp(`${first}: the patch hook exited 0 after \\S+; restoring it now\\.`));
    expect(t).toMatch(new RegExp(`${second}: the patch hook exited 1 after \\S+: \\[lab ${second}\\] error: the patch failed \\(injected fault fail:hook\\); its VMs are brought home and the host counts as failed\\.`));
    expect(t).toMatch(/exit code 1 · /);
    expect(t).toContain(`[lab ${second}] $ /usr/local/sbin/patch-host --reboot ${second}`);
    expect(t).toMatch(new RegExp(`${second}'s \\d+ VMs? (is|are) home again; the host counts as failed: its patch hook exited 1`));
    expect(t).toMatch(new RegExp(`${second}\\s+failed\\s+1\\s+\\S*\\s+patch hook exited 1`));

    // Audited as adapter calls, with the command as run and the outcome.
    for (const [host, outcome] of [
      [first, 'ok'],
      [second, 'failed'],
      [third, 'ok'],
    ] as const) {
      const entries = (await queryAudit(h.rt, host, { limit: 500 })).filter((e) => e.kind === 'adapter' && e.action === 'patch hook');
      expect(entries.map((e) => e.outcome)).toEqual([outcome, 'started']);
      expect(entries[0]!.opId).toBe(runId);
      expect(entries[0]!.approvedBy).toEqual(['bob']);
      expect(entries[0]!.detail).toMatch(new RegExp(`^/usr/local/sbin/patch-host --reboot ${host}: ${outcome === 'ok' ? 'exited 0' : 'exited 1'}`));
    }
  });

  it('a hook job delivered again after a crash does not patch twice: the outcome is "unknown"', async () => {
    const run = h.deps.wiring.jobs.get('patch-hook')!.handler;
    const data = { runOpId: 9999, host: 'hyp20', attempt: 1, command: 'patch hyp20', timeoutMs: 60_000, approvedBy: [] };
    const key = h.rt.key('rr', 9999, 'hook', 'hyp20', 1);
    await run(h.deps, { data } as unknown as Job);
    expect(JSON.parse((await h.rt.redis.get(key))!)).toMatchObject({ exitCode: 0 });
    // Delivered again once its outcome is kept: nothing happens.
    await run(h.deps, { data } as unknown as Job);
    expect((await queryAudit(h.rt, 'hyp20', { limit: 50 })).filter((e) => e.action === 'patch hook' && e.outcome === 'started')).toHaveLength(1);
    // The process died after starting the command, before keeping its outcome: not run again.
    await h.rt.redis.del(key);
    await run(h.deps, { data } as unknown as Job);
    expect(JSON.parse((await h.rt.redis.get(key))!)).toMatchObject({ error: expect.stringMatching(/interrupted while the hook ran on hyp20; it is not run a second time/) });
    expect((await queryAudit(h.rt, 'hyp20', { limit: 50 })).filter((e) => e.action === 'patch hook' && e.outcome === 'started')).toHaveLength(1);
  });
});
