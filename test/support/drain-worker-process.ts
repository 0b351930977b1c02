/** Drain workers in child processes (test/support/drain-worker.ts), for the kill-and-resume tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');

export class DrainWorkers {
  private readonly children: ChildProcess[] = [];
  private readonly logs = new Map<ChildProcess, string>();

  constructor(private readonly redisUrl: string) {}

  /** Start one; resolves when it says it is ready. */
  start(yaml: string, prefix: string, env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/support/drain-worker.ts')], {
      cwd: ROOT,
      env: { ...process.env, FERRY_TEST_YAML: yaml, REDIS_URL: this.redisUrl, FERRY_PREFIX: prefix, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.children.push(child);
    return new Promise((resolve, reject) => {
      child.stdout!.on('data', (b: Buffer) => {
        // The last 20 kB of its log, for a failure to show what the worker did.
        this.logs.set(child, `${this.logs.get(child) ?? ''}${b.toString()}`.slice(-20_000));
        // Its own line, not a log line that happens to say "ready".
        if (/^ready$/m.test(b.toString())) resolve(child);
      });
      child.once('exit', (code) => reject(new Error(`worker exited early (${code})`)));
    });
  }

  /** What every worker logged last, for a failure message. */
  output(): string {
    return this.children.map((c) => `--- worker ${c.pid} ---\n${this.logs.get(c) ?? ''}`).join('\n');
  }

  /** SIGKILL one and wait until it is gone. */
  async kill(c: ChildProcess): Promise<void> {
    if (c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGKILL');
    await new Promise((r) => c.once('exit', r));
  }

  killAll(): void {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}
