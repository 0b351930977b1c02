/** Helpers shared by SSH-based adapters: run a command and turn a failure into an AdapterError. */
import { AdapterError } from '../types.js';
import type { ExecOptions, ExecResult, RemoteShell } from './types.js';

/** Last few non-empty stderr lines: enough to read in a Slack thread, never a wall of text. */
export function stderrTail(stderr: string, lines = 4): string {
  const tail = stderr.split(/\r?\n/).map((l) => l.trim()).filter(Boolean).slice(-lines).join(' | ');
  return tail.length > 600 ? `${tail.slice(0, 600)}…` : tail;
}

/**
 * Run argv on host; a non-zero (or missing) exit code throws AdapterError with the exit code
 * and stderr, attributed to `op`. Connection faults from the shell pass through unchanged.
 */
export async function execChecked(shell: RemoteShell, host: string, op: string, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
  const res = await shell.exec(host, argv, opts);
  if (res.code !== 0) {
    const what = res.code === null ? 'was killed by a signal' : `exited ${res.code}`;
    const err = stderrTail(res.stderr) || stderrTail(res.stdout) || '(no output)';
    throw new AdapterError(host, op, `\`${argv.slice(0, 4).join(' ')}\` on ${host} ${what}: ${err}`, { code: 'exit' });
  }
  return res;
}
