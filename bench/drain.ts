/**
 * Drain benchmark: a lab host with 40 running HA VMs, a fixed time per live migration, at the
 * default concurrency of 2. Prints the time from Start to the summary and its ratio to the
 * ideal ceil(40 / 2) × migration time (1.00 would mean zero overhead per migration).
 * Redis is a private redis-server; messages go to a console session nobody reads.
 */
import { drainLabYaml, setHostVms } from '../test/support/drain-support.js';
import { benchFerry, runAsScript } from './support.js';

const VMS = 40;
const MIGRATION_MS = 500;
const CONCURRENCY = 2;

export async function main(): Promise<Record<string, number>> {
  const f = await benchFerry(drainLabYaml({ latencyMs: 5, migrationMs: MIGRATION_MS, concurrency: CONCURRENCY }), 'bench-drain');
  try {
    await setHostVms(f.deps, 'hyp03', VMS, { memoryMiB: 4096 });
    const { op: done, ms } = await f.startAndWait(await f.planned('drain hyp03'));
    const ideal = Math.ceil(VMS / CONCURRENCY) * MIGRATION_MS;
    const ratio = ms / ideal;
    console.log(
      `drain of ${VMS} VMs at concurrency ${CONCURRENCY}, ${MIGRATION_MS} ms per migration: ${done.status} (${done.summary}); ` +
        `Start to summary ${Math.round(ms)} ms, ideal ${ideal} ms, ratio ${ratio.toFixed(3)}`,
    );
    return { drain_40_ms: Math.round(ms), drain_40_ideal_ms: ideal, drain_40_ratio: Number(ratio.toFixed(3)) };
  } finally {
    await f.close();
  }
}

runAsScript(import.meta, main);
