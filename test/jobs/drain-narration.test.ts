/** Drain narration is pure: each event the runner emits reads as one message, tested without Redis or hosts. */
import { describe, expect, it } from 'vitest';
import { narrateDrain, tallyLine } from '../../src/jobs/drain/narration.js';
import { DRAIN_ACTIONS } from '../../src/jobs/drain/control.js';
import type { DrainEvent, DrainTally } from '../../src/jobs/drain/events.js';

const tally: DrainTally = {
  moved: [{ vm: 'web01', target: 'hyp04', durationMs: 65_000 }],
  returned: [],
  toSave: 1,
  saved: ['db02'],
  skipped: [['tmpl01', 'template, not moved']],
  failed: [['web02', 'timeout']],
};

describe('drain narration', () => {
  it('names the numbers and the way home when a drain finishes', () => {
    const m = narrateDrain({ type: 'finished', opId: 7, host: 'hyp03', tally, status: 'partial', durationMs: 125_000 });
    expect(m.text).toBe('hyp03 drained in 2m 5s: 1 moved, 1 saved, 1 skipped, 1 failed.');
    const tables = m.blocks.filter((b) => b.type === 'table').map((b) => (b as { title?: string }).title);
    expect(tables).toEqual(['*Moved*', '*Saved on hyp03* (cut off until restore hyp03 resumes them)', '*Skipped*', '*Failed*']);
    // Only a clean drain promises that restore brings the VMs home.
    expect(JSON.stringify(m.blocks.at(-1))).not.toContain('ledger saved');
    expect(JSON.stringify(narrateDrain({ type: 'finished', opId: 7, host: 'hyp03', tally: { ...tally, failed: [] }, status: 'succeeded', durationMs: 1000 }).blocks.at(-1))).toContain(
      'restore hyp03 brings the VMs home',
    );
    expect(tallyLine(tally)).toBe('1 moved, 1 saved, 1 skipped, 1 failed');
  });

  it('heads a rolled-back drain with the VMs that failed', () => {
    const m = narrateDrain({ type: 'finished', opId: 7, host: 'hyp03', tally: { ...tally, failed: [] }, status: 'failed', durationMs: 1000, rolledBack: { failed: ['web02', 'web03'] } });
    expect(m.text).toBe('drain of hyp03 failed (web02, web03) and was rolled back.');
  });

  it('offers Roll back, Retry and one Skip per failed VM on hold, each with its typed command', () => {
    const m = narrateDrain({ type: 'held', opId: 9, host: 'hyp03', failed: ['web02'], moved: 3, total: 5, left: 1 });
    expect(m.text).toBe('job 9 is on hold: web02 failed to move. 3 of 5 VMs moved, 1 not started; hyp03 stays in maintenance until you decide.');
    const actions = m.blocks.find((b) => b.type === 'actions') as { buttons: { action: string; command?: string }[] };
    expect(actions.buttons.map((b) => [b.action, b.command])).toEqual([
      [DRAIN_ACTIONS.rollback, 'rollback 9'],
      [DRAIN_ACTIONS.retry, 'retry 9'],
      [DRAIN_ACTIONS.skip, 'skip 9 web02'],
    ]);
  });

  it('says what stays where when a drain stops early', () => {
    const cases: [DrainEvent, string][] = [
      [{ type: 'cancelled', opId: 4, host: 'hyp03', by: 'U01ALICE', moved: 2, total: 5 }, 'job 4 was cancelled by <@U01ALICE>: 2 of 5 VMs had moved. hyp03 stays in maintenance; restore hyp03 brings them home.'],
      [{ type: 'gate-refused', opId: 4, host: 'hyp03', why: 'Limit passed.' }, 'Limit passed. job 4 stops here; nothing was moved and hyp03 stays out of maintenance.'],
      [{ type: 'stopped-waiting', opId: 4, title: 'drain hyp03', host: 'hyp03', why: 'cancelled by <@U1>', held: false, moved: 0 }, 'job 4 (drain hyp03): cancelled by <@U1>. Nothing was moved.'],
      [{ type: 'maintenance-entered', host: 'hyp03', entering: true, notes: ['DRS is fully automated.'], moves: 3, concurrency: 2 }, 'hyp03 is entering maintenance: no new VMs land on it, and the platform completes it once the last running VM has left. Moving 3 VMs, 2 at a time. Note: DRS is fully automated.'],
    ];
    for (const [e, text] of cases) expect(narrateDrain(e).text).toBe(text);
  });
});
