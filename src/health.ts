/** Prometheus-style metrics for /metrics: queue depths and operations by state. */
import type { Deps } from './jobs/context.js';

export async function metricsText(deps: Deps): Promise<string> {
  const lines: string[] = ['# HELP ferry_queue_jobs Jobs per queue and state.', '# TYPE ferry_queue_jobs gauge'];
  for (const q of deps.queues.all()) {
    const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'waiting-children', 'paused');
    for (const [state, n] of Object.entries(counts)) lines.push(`ferry_queue_jobs{queue="${q.name}",state="${state}"} ${n}`);
  }
  const active = await deps.ops.active();
  lines.push('# HELP ferry_operations_active Operations not yet finished.', '# TYPE ferry_operations_active gauge', `ferry_operations_active ${active.length}`);
  return lines.join('\n') + '\n';
}
