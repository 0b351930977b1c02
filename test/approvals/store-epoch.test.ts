/**
 * Approval request ids are never handed out twice (issue 13, item 3): Redis loses its data and
 * every process restarts (here: a new Runtime, with nothing in memory), yet `approve <id>` typed
 * from an old card must not reach a new request. The id memory outside Redis (FERRY_STATE_DIR,
 * src/jobs/epoch.ts) moves the sequence past every id seen before the loss.
 */
import { afterAll, expect, it } from 'vitest';
import { inject } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import { LAB_DEFAULT_YAML } from '../../src/config/lab-default.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { silentLogger } from '../../src/log.js';
import { ApprovalStore } from '../../src/approvals/store.js';
import { resolvePolicy } from '../../src/approvals/policy.js';
import { eventually } from '../support/wait.js';

const yaml = `${LAB_DEFAULT_YAML}approvals:\n  remove-ports:\n    approvals: 1\n    approvers: [group:approvers]\n    expiry: 30m\n`;
const prefix = `test-approval-epoch-${process.pid}-${Date.now()}`;
const runtimes: Runtime[] = [];
afterAll(async () => {
  for (const rt of runtimes) await rt.close().catch(() => undefined);
});

function start(): Runtime {
  const rt = createRuntime({ loaded: parseConfig(yaml, 'test'), redisUrl: inject('redisUrl'), log: silentLogger(), prefix });
  runtimes.push(rt);
  return rt;
}

const create = (rt: Runtime) =>
  new ApprovalStore(rt).create({ action: 'remove-ports', requester: 'alice', plan: [], summary: 'remove stale ports' }, resolvePolicy(rt.config, 'remove-ports'), { conv: { surface: 'console', session: 's', user: 'alice' } });

it('after Redis lost its data and the process restarted, a new approval request takes an id above every old one', async () => {
  const before = start();
  await create(before);
  const old = await create(before);
  // The memory is written in the background: wait until it holds the highest id.
  const dir = process.env.FERRY_STATE_DIR!;
  await eventually(() => fs.readdirSync(dir).some((f) => f.includes(prefix) && fs.readFileSync(path.join(dir, f), 'utf8').includes(`"maxApproval":${old.request.id}`)), 'the id memory to be saved', 10_000);
  await before.close();

  // Everything under the prefix goes, as when Redis comes back empty.
  const after = start();
  let cursor = '0';
  do {
    const [next, found] = await after.redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (found.length) await after.redis.del(...found);
  } while (cursor !== '0');

  const fresh = await create(after);
  expect(Number(fresh.request.id)).toBeGreaterThan(Number(old.request.id));
});
