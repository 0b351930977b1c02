/** Each workflow owns its params' shape: reading an operation of another kind as it is refused. */
import { describe, expect, it } from 'vitest';
import { commonParams, paramsOf } from '../../src/jobs/operations.js';
import { drainParams } from '../../src/jobs/drain/model.js';
import { restoreParams } from '../../src/jobs/workflows/restore.js';
import { migrateParams } from '../../src/jobs/workflows/migrate.js';
import { sweepParams } from '../../src/jobs/workflows/find-stale-ports.js';
import { removalParams } from '../../src/jobs/workflows/remove-stale-ports.js';
import type { Operation } from '../../src/jobs/operations.js';

const op = (kind: string, params: Record<string, unknown>): Operation =>
  ({ id: 7, kind, title: 't', requester: 'alice', conv: { surface: 'console', session: 's', user: 'alice' }, hosts: [], status: 'running', createdAt: 0, params }) as Operation;

describe('paramsOf', () => {
  it('reads params of the kinds named, and refuses another kind', () => {
    expect(drainParams(op('drain', { host: 'hyp03', cluster: 'prod-a' })).host).toBe('hyp03');
    expect(() => drainParams(op('restore', { host: 'hyp03' }))).toThrow('job 7 is a restore, not a drain');
    expect(paramsOf<{ vm: string }>(op('precheck', { vm: 'web01' }), ['migrate', 'precheck']).vm).toBe('web01');
  });

  it.each([
    ['restore', restoreParams, { host: 'hyp03', cluster: 'prod-a', stage: 'restoring', total: 4 }, 'total', 4],
    ['migrate', migrateParams, { vm: 'web01', target: 'hyp02', dryRun: false }, 'target', 'hyp02'],
    ['precheck', migrateParams, { vm: 'web01', target: 'hyp02', dryRun: true, precheckOnly: true }, 'vm', 'web01'],
    ['find-stale-ports', sweepParams, { selection: '2 hosts: hyp01-02' }, 'selection', '2 hosts: hyp01-02'],
    ['remove-stale-ports', removalParams, { approvalId: 'r12' }, 'approvalId', 'r12'],
  ] as const)('%s: its own accessor reads it; a drain is refused', (kind, read, params, field, want) => {
    expect((read(op(kind, params)) as Record<string, unknown>)[field]).toBe(want);
    expect(() => read(op('drain', { host: 'hyp03', cluster: 'prod-a' }))).toThrow(`job 7 is a drain, not a`);
  });
});

describe('commonParams', () => {
  it('reads cluster, stage and duration of any kind, and leaves out what has another type', () => {
    expect(commonParams(op('restore', { host: 'h', cluster: 'prod-a', stage: 'restoring' }))).toEqual({ cluster: 'prod-a', stage: 'restoring' });
    expect(commonParams(op('find-stale-ports', { selection: 'x', durationMs: 12 }))).toEqual({ durationMs: 12 });
    expect(commonParams(op('view', { cluster: 3, stage: null }))).toEqual({});
  });
});
