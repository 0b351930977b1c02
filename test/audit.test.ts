import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { createRuntime, type Runtime } from '../src/runtime.js';
import { silentLogger } from '../src/log.js';
import { audit, queryAudit } from '../src/audit/audit.js';
import { fastLabYaml, uniquePrefix } from './support/harness.js';

describe('audit trail', () => {
  let rt: Runtime;
  beforeAll(() => {
    // A clock years ahead of the server's: retention must still keep fresh entries.
    rt = createRuntime({ loaded: parseConfig(fastLabYaml('audit:\n  retentionDays: 1\n'), 't'), redisUrl: inject('redisUrl'), log: silentLogger(), prefix: uniquePrefix('audit'), clock: { now: () => Date.UTC(2031, 0, 1) } });
  });
  afterAll(() => rt.close());

  it('appends, and finds entries by host, VM or job, newest first', async () => {
    await audit(rt, { actor: 'alice', kind: 'command', action: 'drain hyp03', targets: ['hyp03'], outcome: 'started', opId: 41 });
    await audit(rt, { actor: 'ferry', kind: 'adapter', action: 'migrateVm web01 hyp03 -> hyp05', targets: ['hyp03', 'hyp05', 'web01'], outcome: 'ok', opId: 41 });
    await audit(rt, { actor: 'bob', kind: 'command', action: 'drain hyp030', targets: ['hyp030'], outcome: 'refused' });
    expect((await queryAudit(rt, 'hyp03')).map((e) => e.action)).toEqual(['migrateVm web01 hyp03 -> hyp05', 'drain hyp03']);
    expect((await queryAudit(rt, 'web01')).map((e) => e.actor)).toEqual(['ferry']);
    expect((await queryAudit(rt, '41')).length).toBe(2);
    expect(await queryAudit(rt, 'hyp99')).toEqual([]);
  });

  it('trims by retention on the server clock: old entries go, fresh ones stay', async () => {
    const key = rt.key('audit');
    const twoDaysAgo = Date.now() - 2 * 86_400_000;
    await rt.redis.del(key);
    await rt.redis.xadd(key, `${twoDaysAgo}-0`, 'json', JSON.stringify({ actor: 'old', kind: 'command', action: 'old', targets: ['hypold'], outcome: 'ok' }), 'targets', ' hypold ', 'op', '');
    for (let i = 0; i < 200; i++) await audit(rt, { actor: 'x', kind: 'command', action: `a${i}`, targets: ['hypnew'], outcome: 'ok' });
    expect(await queryAudit(rt, 'hypold')).toEqual([]);
    expect(await rt.redis.xlen(key)).toBe(200);
    expect((await queryAudit(rt, 'hypnew', { limit: 500 })).length).toBe(200);
  });
});
