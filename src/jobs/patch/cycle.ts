/**
 * The rolling run's HostCycle over the drain and restore workflows (src/jobs/workflows/drain.ts,
 * restore.ts): each host is drained and restored as its own operation, with the host lock, the
 * ledger, prechecks, retries and rollback those workflows own. The run was approved as a whole
 * (policy 'rolling-run'), so the run presses the drain's Start itself, as the run's requester;
 * a drain that needs more (an override approval) waits on its own card like any other.
 */
import type { Deps } from '../context.js';
import { startDrain } from '../workflows/drain.js';
import { startRestore } from '../workflows/restore.js';
import { decide, stageOf, waitState } from '../drain/control.js';
import { acquireLock, lockedSentence } from '../drain/locks.js';
import type { CycleRequest, HostCycle } from './rolling.js';
import type { Workflow } from '../wiring.js';

async function lockOrSay(deps: Deps, req: CycleRequest, opId: number, op: 'drain' | 'restore', ttlMs: number): Promise<boolean> {
  const held = await acquireLock(deps.rt, { host: req.host, opId, owner: req.requester, op }, ttlMs);
  if (!held) return true;
  await deps.ops.patch(opId, { status: 'failed', finishedAt: deps.rt.clock.now(), summary: lockedSentence(held) });
  return false;
}

export const workflowCycle: HostCycle = {
  async drain(deps, req) {
    let lockRefused = false;
    const op = await startDrain(deps, {
      conv: req.conv,
      requester: req.requester,
      title: `drain ${req.host} (rolling run ${req.runOpId})`,
      drain: { host: req.host, dryRun: false, rollback: 'auto', saveNonHa: false, coldMigrate: false },
      lock: async (opId) => (lockRefused = !(await lockOrSay(deps, req, opId, 'drain', 35 * 60_000))) === false,
    });
    if (!op) throw new Error(`could not start the drain of ${req.host}${lockRefused ? ' (the host is locked by another operation)' : ''}`);
    return op.id;
  },
  async restore(deps, req) {
    const op = await startRestore(deps, {
      conv: req.conv,
      requester: req.requester,
      title: `restore ${req.host} (rolling run ${req.runOpId})`,
      host: req.host,
      lock: (opId) => lockOrSay(deps, req, opId, 'restore', 60_000),
    });
    if (!op) throw new Error(`could not start the restore of ${req.host} (the host is locked by another operation)`);
    return op.id;
  },
  async nudge(deps, opId, req) {
    const op = await deps.ops.get(opId);
    // A drain with its own approval request (policy or override) waits for its approvers.
    if (op?.kind === 'drain' && op.status === 'waiting' && stageOf(op) === 'awaiting-start' && waitState(op).approvalId === undefined) {
      const refusal = await decide(deps, opId, req.requester, 'start', undefined);
      if (refusal) deps.rt.log.info({ opId, refusal }, 'rolling run could not start its drain itself; it waits on the drain card');
    }
  },
};

/** A rolling run's hosts go through the drain and restore workflows. */
export const hostCycleWorkflow: Workflow = { name: 'rolling-host-cycle', hostCycle: workflowCycle };
