import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { createRuntime, type Runtime } from '../src/runtime.js';
import { silentLogger } from '../src/log.js';
import { audit, queryAudit } from '../src/audit/audit.js';
import { fastLabYaml, uniquePrefix } from './support/harness.js';
import { bound } from './support/speed.js';

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

  // Issue 13, item 6: `audit` scanned only the newest 10,000 entries, so 10,100 refused commands
  // (from many users: one user's flood is cut by the per-user rate) hid two real entries of a host.
  it('an entry stays found behind 10,100 newer entries about other targets (indexed by host, VM and job)', async () => {
    await audit(rt, { actor: 'alice', kind: 'command', action: 'drain hyp15', targets: ['hyp15'], outcome: 'started', opId: 7001 });
    await audit(rt, { actor: 'ferry', kind: 'adapter', action: 'migrateVm Db07 hyp15 -> hyp16', targets: ['hyp15', 'hyp16', 'Db07'], outcome: 'ok', opId: 7001 });
    const noise = Array.from({ length: 10_100 }, (_, i) => audit(rt, { actor: `U0FLOOD${i % 50}`, kind: 'command', action: `drain hypx${i}`, targets: [`hypx${i}`], outcome: 'refused', detail: 'not in group operators' }));
    await Promise.all(noise);
    expect((await queryAudit(rt, 'hyp15')).map((e) => e.action)).toEqual(['migrateVm Db07 hyp15 -> hyp16', 'drain hyp15']);
    expect((await queryAudit(rt, 'db07')).map((e) => e.actor)).toEqual(['ferry']);
    expect((await queryAudit(rt, '7001')).length).toBe(2);
    // And the newest of the noise, by the same path.
    expect((await queryAudit(rt, 'hypx10099')).map((e) => e.outcome)).toEqual(['refused']);
  }, bound(60_000));

  it('entries appended before the index existed (an older release) are still found', async () => {
    const older = createRuntime({ loaded: parseConfig(fastLabYaml(), 't'), redisUrl: inject('redisUrl'), log: silentLogger(), prefix: uniquePrefix('audit-old') });
    try {
      // As the previous release wrote it: the stream entry alone.
      await older.redis.xadd(older.key('audit'), '*', 'json', JSON.stringify({ actor: 'bob', kind: 'command', action: 'drain hyp21', targets: ['hyp21'], outcome: 'started', opId: 12 }), 'targets', ' hyp21 ', 'op', '12', 'uid', 'u1');
      await audit(older, { actor: 'carol', kind: 'command', action: 'drain hyp21', targets: ['hyp21'], outcome: 'refused' });
      await audit(older, { actor: 'dave', kind: 'adapter', action: 'maintenance hyp21', targets: ['hyp21'], outcome: 'ok', opId: 12 });
      expect((await queryAudit(older, 'hyp21')).map((e) => e.actor)).toEqual(['dave', 'carol', 'bob']);
      expect((await queryAudit(older, '12')).map((e) => e.actor)).toEqual(['dave', 'bob']);
      expect((await queryAudit(older, 'hyp21', { limit: 2 })).map((e) => e.actor)).toEqual(['dave', 'carol']);
    } finally {
      await older.close();
    }
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
