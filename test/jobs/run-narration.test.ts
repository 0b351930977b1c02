/** Rolling-run narration is pure: each RunEvent reads as one message, without Redis or hosts. */
import { describe, expect, it } from 'vitest';
import { narrateRun } from '../../src/jobs/patch/run-narration.js';
import { RUN_ACTIONS } from '../../src/jobs/patch/run-state.js';

describe('rolling run narration', () => {
  it('asks for Done with a button that carries the typed command', () => {
    const m = narrateRun({ type: 'patch-due', opId: 41, host: 'hyp02' });
    expect(m.text).toBe('hyp02 is drained, patch it and click Done.');
    const actions = m.blocks.find((b) => b.type === 'actions') as { buttons: { action: string; value: string; command?: string }[] };
    expect(actions.buttons).toMatchObject([{ action: RUN_ACTIONS.done, value: '41:hyp02', command: 'done 41' }]);
  });

  it('reports a failed hook with its exit code and last line, and says the VMs come home', () => {
    const m = narrateRun({ type: 'hook-finished', host: 'hyp02', command: 'apt-get -y upgrade', outcome: { exitCode: 100, durationMs: 12_000, tail: ['E: Unable to fetch'] } });
    expect(m.text).toBe('hyp02: the patch hook exited 100 after 12s: E: Unable to fetch; its VMs are brought home and the host counts as failed.');
    expect(JSON.stringify(m.blocks)).toContain('exit code 100');
  });

  it('counts attempts and VMs in plain words', () => {
    expect(narrateRun({ type: 'host-starting', host: 'hyp02', index: 2, total: 3, attempt: 2 }).text).toBe('hyp02 (2/3), attempt 2: starting.');
    expect(narrateRun({ type: 'host-patched', host: 'hyp02', vms: 1 }).text).toBe('hyp02 is patched and its 1 VM is home.');
    expect(narrateRun({ type: 'host-patched', host: 'hyp02', vms: 3 }).text).toBe('hyp02 is patched and its 3 VMs are home.');
  });
});
