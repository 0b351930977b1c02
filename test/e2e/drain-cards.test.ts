/**
 * What the thread and the channel show at the end of a drain or restore: the card is the
 * command's one answer (no echo before it) and ends in a final state, a plan is posted once,
 * and the card's figures agree with its table. Lab, real Redis, in-process workers, console session.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeHarness, type Harness } from '../support/harness.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import { renderText } from '../../src/bot/render/text.js';
import type { ConsoleEvent } from '../../src/bot/console/surface.js';
import type { Message } from '../../src/chat/messages.js';
import { drainLabYaml, hostState, setHostVms, vmName } from '../support/drain-support.js';
import { bound } from '../support/speed.js';

let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** Every message as it reads now (its last update), in posting order, with its thread. */
function finalMessages(h: Harness): { ts: string; threadTs?: string; text: string; message: Message }[] {
  const out = new Map<string, { ts: string; threadTs?: string; text: string; message: Message }>();
  for (const e of h.events as ConsoleEvent[]) {
    if (e.kind === 'post') out.set(e.ref.ts, { ts: e.ref.ts, ...(e.threadTs ? { threadTs: e.threadTs } : {}), text: renderText(e.message), message: e.message });
    else if (e.kind === 'update') {
      const m = out.get(e.ref.ts);
      if (m) out.set(e.ref.ts, { ...m, text: renderText(e.message), message: e.message });
    }
  }
  return [...out.values()];
}

/** Wait until no message reads "checking" any more (the card is updated last). */
async function settled(h: Harness): Promise<string[]> {
  return h.waitFor(async () => {
    const texts = finalMessages(h).map((m) => m.text);
    return texts.some((t) => /checking/.test(t)) ? undefined : texts;
  }, 'every message to leave "checking"', 10_000);
}

function count(texts: string[], what: string): number {
  return texts.filter((t) => t.includes(what)).length;
}

describe('the card is the answer and ends in a final state', () => {
  it('a refused drain (host already in maintenance), an unreachable host, a dry run and a refused plan', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    await setHostVms(h.deps, 'hyp03', 3);

    await h.rt.adapters.forHost('hyp04').enterMaintenance('hyp04');
    await h.run('drain hyp04');
    const refused = await h.waitForOp(undefined);
    expect(refused.status).toBe('failed');
    let texts = await settled(h);
    // One top-level message: the card, which says refused, with the reason; no echo of the command.
    const top = finalMessages(h).filter((m) => !m.threadTs);
    expect(top.map((m) => m.text.split('\n')[0])).toEqual([expect.stringMatching(/^Drain hyp04/)]);
    expect(texts.find((t) => t.startsWith('Drain hyp04'))).toMatch(/refused: nothing was changed\nhyp04 is already in maintenance/);
    expect(texts.some((t) => t.startsWith('@alice drain hyp04'))).toBe(false);

    await setLabFault(h.rt.redis, h.rt.prefix, 'hyp05', 'unreachable');
    await h.run('drain hyp05');
    await h.waitForOp((await h.deps.ops.recent(1))[0]!.id);
    texts = await settled(h);
    expect(texts.find((t) => t.startsWith('Drain hyp05'))).toMatch(/refused: nothing was changed\nhyp05 did not answer \(connection timed out\); nothing was changed/);
    await setLabFault(h.rt.redis, h.rt.prefix, 'hyp05', null);

    await h.rt.adapters.forHost('hyp04').exitMaintenance('hyp04');
    await h.run('drain hyp03 dry-run');
    await h.waitForOp((await h.deps.ops.recent(1))[0]!.id);
    texts = await settled(h);
    // The plan is in the card, not a second time in the thread.
    expect(count(texts, 'hyp03 can be drained: 3 VMs move live')).toBe(1);

    const st = await hostState(h.rt, 'hyp03');
    st.vms[0]!.ha = false;
    await h.rt.redis.set(`${h.rt.prefix}:lab:host:hyp03`, JSON.stringify(st));
    await h.run('drain hyp03');
    await h.waitForOp((await h.deps.ops.recent(1))[0]!.id);
    texts = await settled(h);
    expect(count(texts, `${vmName('hyp03', 1)} is running and not highly available`)).toBe(1);
  });

  it('a successful drain and its restore: the card ends succeeded; restore never opens with "100% 0/0"', async () => {
    h = await makeHarness({ yaml: drainLabYaml() });
    await setHostVms(h.deps, 'hyp03', 4);
    const op = await h.planned('drain hyp03');
    await h.run(`start ${op.id}`);
    expect((await h.waitForOp(op.id, 30_000)).status).toBe('succeeded');
    await settled(h);
    await h.waitFor(async () => finalMessages(h!).some((m) => !m.threadTs && m.text.startsWith(`Drain hyp03 · job ${op.id} · succeeded`)), 'the final drain card, top-level');

    await h.run('restore hyp03');
    const r = await h.waitForOp((await h.deps.ops.recent(1))[0]!.id, 30_000);
    expect(r.status).toBe('succeeded');
    await h.waitFor(async () => finalMessages(h!).some((m) => m.text.startsWith(`Restore hyp03 · job ${r.id} · succeeded`)), 'the final restore card');
    // No version of the restore card claimed a done 0/0.
    const restoreCards = (h.events as ConsoleEvent[]).filter((e) => e.kind !== 'ephemeral' && renderText(e.message).startsWith('Restore hyp03'));
    expect(restoreCards.length).toBeGreaterThan(0);
    for (const e of restoreCards) expect(renderText(e.message)).not.toMatch(/0\/0 VMs back/);
    expect(renderText(restoreCards.at(-1)!.message)).toMatch(/4\/4 VMs back/);
  });

  it('rollback: the card counts what is settled, and the final card does not call failed VMs done', async () => {
    h = await makeHarness({ yaml: drainLabYaml({ concurrency: 1, retries: 0 }) });
    await setHostVms(h.deps, 'hyp03', 5);
    // The first two move; the third fails; rollback brings two back.
    await setLabFault(h.rt.redis, h.rt.prefix, `vm:${vmName('hyp03', 3)}`, 'migrate-fail');
    const op = await h.planned('drain hyp03 rollback auto');
    await h.run(`start ${op.id}`);
    expect((await h.waitForOp(op.id, 30_000)).status).toBe('failed');
    await settled(h);
    await h.waitFor(async () => finalMessages(h!).some((m) => m.text.startsWith(`Drain hyp03 · job ${op.id} · failed`)), 'the final drain card');
    const cards = (h.events as ConsoleEvent[]).filter((e) => e.kind !== 'ephemeral' && renderText(e.message).startsWith(`Drain hyp03 · job ${op.id}`));
    for (const e of cards) {
      const progress = e.message.blocks.find((b) => b.type === 'progress');
      const table = e.message.blocks.find((b) => b.type === 'table');
      if (!progress || progress.type !== 'progress' || !table || table.type !== 'table') continue;
      const waiting = table.rows.filter((r) => r[2] === 'waiting' || r[2]?.startsWith('moving')).length;
      const failed = table.rows.filter((r) => r[2]?.startsWith('FAILED')).length;
      // Done never counts a VM still waiting, moving or failed, and failures are named.
      expect(progress.done, renderText(e.message)).toBeLessThanOrEqual(progress.total - waiting);
      if (failed) expect(progress.label, renderText(e.message)).toContain(`${failed} failed`);
    }
    const last = renderText(cards.at(-1)!.message);
    expect(last).toMatch(/2 back home/);
  });
});

describe('lock keepers', () => {
  it('restore stops when another operation holds its host, and moves nothing more', async () => {
    h = await makeHarness({ yaml: drainLabYaml({ concurrency: 1, migrationMs: 400 }) });
    const names = await setHostVms(h.deps, 'hyp03', 4);
    const op = await h.planned('drain hyp03');
    await h.run(`start ${op.id}`);
    expect((await h.waitForOp(op.id, 30_000)).status).toBe('succeeded');
    await h.run('restore hyp03');
    const r = await h.waitFor(async () => {
      const o = (await h!.deps.ops.recent(1))[0];
      return o && o.kind === 'restore' ? o : undefined;
    }, 'the restore');
    // Once the first VM is home, another operation has the host (its lock expired meanwhile).
    await h.waitFor(async () => Object.values(await h!.rt.redis.hgetall(`${h!.rt.prefix}:op:${r.id}:vms`)).some((v) => v.includes('"returned"')), 'one VM home');
    const other = { host: 'hyp03', opId: 999, owner: 'bob', op: 'drain', at: Date.now() };
    await h.rt.redis.set(`${h.rt.prefix}:lock:host:hyp03`, JSON.stringify(other), 'PX', 60_000);
    const done = await h.waitForOp(r.id, 30_000);
    expect(done.status).toBe('failed');
    expect(done.summary).toMatch(/job 999/);
    const where = await whereIsAll(h);
    expect(names.filter((n) => where.get(n) === 'hyp03').length).toBeLessThan(4);
  }, bound(60_000));
});

async function whereIsAll(h: Harness): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const host of ['hyp01', 'hyp02', 'hyp03', 'hyp04', 'hyp05', 'hyp06']) for (const v of (await hostState(h.rt, host)).vms) out.set(v.name, host);
  return out;
}
