/** Each workflow owns its params' shape: reading an operation of another kind as it is refused. */
import { describe, expect, it } from 'vitest';
import { paramsOf } from '../../src/jobs/operations.js';
import { drainParams } from '../../src/jobs/drain/model.js';
import type { Operation } from '../../src/jobs/operations.js';

const op = (kind: string, params: Record<string, unknown>): Operation =>
  ({ id: 7, kind, title: 't', requester: 'alice', conv: { surface: 'console', session: 's', user: 'alice' }, hosts: [], status: 'running', createdAt: 0, params }) as Operation;

describe('paramsOf', () => {
  it('reads params of the kinds named, and refuses another kind', () => {
    expect(drainParams(op('drain', { host: 'hyp03', cluster: 'prod-a' })).host).toBe('hyp03');
    expect(() => drainParams(op('restore', { host: 'hyp03' }))).toThrow('job 7 is a restore, not a drain');
    expect(paramsOf<{ vm: string }>(op('precheck', { vm: 'web01' }), ['migrate', 'precheck']).vm).toBe('web01');
  });
});
