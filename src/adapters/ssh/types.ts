/**
 * The small interface SSH-based adapters (Hyper-V, libvirt) talk through. The implementation
 * (node-ssh: pinned host keys, pool per host, timeouts, bounded concurrency) lives beside it;
 * tests can substitute a fake that records commands.
 */
export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit code; null when the command was killed by a signal or timed out. */
  code: number | null;
}

export interface ExecOptions {
  /** Written to the command's stdin, then closed. */
  stdin?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface RemoteShell {
  /**
   * Run one command line on a host. `argv` is quoted by the implementation (POSIX single
   * quotes) so callers never build shell strings from user input; each element must already
   * be an inventory-validated name or a constant.
   */
  exec(host: string, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  close(): Promise<void>;
}

/** POSIX single-quote one argument: abc -> 'abc', it's -> 'it'\''s'. */
export function shellQuote(arg: string): string {
  if (/^[A-Za-z0-9_\-./:=@%+,]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}
