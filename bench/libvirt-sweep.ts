/**
 * Stale-port sweep bench: describeHost + npivInventory over many host aliases of one loopback
 * sshd, through the libvirt adapter at concurrency N, side by side with `xargs -P N ssh … virsh …`
 * running exactly the virsh commands the adapter sent (recorded in a warm-up pass).
 * Each alias has its own libvirt test-driver file (test/fixtures/libvirt/fleet.ts).
 *
 *   npx tsx bench/libvirt-sweep.ts [--hosts 12] [--concurrency 6]
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Redis } from 'ioredis';
import { LibvirtAdapter } from '../src/adapters/libvirt/adapter.js';
import { SshRemoteShell } from '../src/adapters/ssh/index.js';
import { shellQuote, type ExecOptions, type ExecResult, type RemoteShell } from '../src/adapters/ssh/types.js';
import { pMap } from '../src/core/pmap.js';
import { findStalePorts } from '../src/core/stale-ports.js';
import { silentLogger } from '../src/log.js';
import { VIRSH_TESTDRIVER, writeFleet } from '../test/fixtures/libvirt/fleet.js';
import { findProgram, startSshd } from '../test/support/sshd.js';
import { startPrivateRedis } from '../test/support/redis-server.js';
import { runAsScript } from './support.js';

export interface SweepBenchResult {
  hosts: number;
  concurrency: number;
  commands: number;
  adapterMs: number;
  xargsMs: number;
  ratio: number;
  stalePorts: number;
}

/** Records the argv each host received, so the xargs side runs the very same commands. */
class Recorder implements RemoteShell {
  readonly argv: { host: string; argv: readonly string[] }[] = [];
  constructor(private readonly inner: RemoteShell) {}
  exec(host: string, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    this.argv.push({ host, argv });
    return this.inner.exec(host, argv, opts);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : Number(process.env[`BENCH_${name.toUpperCase()}`] ?? fallback);
  return Number.isInteger(v) && v > 0 ? v : fallback;
}

export async function main(opts: { hosts?: number; concurrency?: number } = {}): Promise<SweepBenchResult> {
  const nHosts = opts.hosts ?? arg('hosts', 12);
  const concurrency = opts.concurrency ?? arg('concurrency', 6);
  for (const p of ['sshd', 'ssh', 'virsh', 'xargs']) if (!findProgram(p)) throw new Error(`bench needs ${p} on PATH (see .ci/run)`);

  const peer = await startSshd({ maxStartups: 1000, maxSessions: 64 });
  const redis = await startPrivateRedis();
  const client = new Redis(redis.url);
  const hosts = Array.from({ length: nHosts }, (_, i) => `kvm${String(i + 1).padStart(3, '0')}`);
  const fleetDir = path.join(peer.dir, 'fleet');
  writeFleet(fleetDir, hosts);

  const makeAdapter = (shell: RemoteShell): LibvirtAdapter =>
    new LibvirtAdapter(
      { cluster: 'bench', hosts, uri: `test://${fleetDir}/{host}.xml`, migrateUri: 'qemu+ssh://{host}/system', virsh: VIRSH_TESTDRIVER, addresses: {} },
      { shell, redis: client, prefix: `ferry-bench-${process.pid}`, log: silentLogger() },
    );
  const sshSettings = {
    user: peer.user,
    port: peer.port,
    privateKeyPath: peer.privateKeyPath,
    knownHosts: peer.knownHostsPath,
    addresses: Object.fromEntries(hosts.map((h) => [h, peer.host])),
  };
  const sweep = async (adapter: LibvirtAdapter): Promise<number> => {
    const results = await pMap(hosts, concurrency, async (h) => {
      await adapter.describeHost(h);
      return findStalePorts(await adapter.npivInventory(h)).length;
    });
    return results.reduce((a, b) => a + b, 0);
  };

  try {
    // Warm-up pass: records the commands (and warms the page cache for virsh and the fleet files).
    const recorder = new Recorder(new SshRemoteShell(sshSettings, { posixKill: true }));
    const warm = makeAdapter(recorder);
    const stalePorts = await sweep(warm);
    await warm.close();

    // Measured: a fresh adapter, so connection setup is included, as in a real sweep.
    const adapter = makeAdapter(new SshRemoteShell(sshSettings, { posixKill: true }));
    const t0 = performance.now();
    await sweep(adapter);
    const adapterMs = performance.now() - t0;
    await adapter.close();

    const lines = recorder.argv.map((c) => c.argv.map(shellQuote).join(' ')).join('\n') + '\n';
    const sshArgs = ['-p', String(peer.port), '-i', peer.privateKeyPath, '-o', `UserKnownHostsFile=${peer.knownHostsPath}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', `${peer.user}@${peer.host}`];
    const t1 = performance.now();
    await new Promise<void>((resolve, reject) => {
      // One line = one remote command string; -d '\n' keeps xargs from re-parsing its quotes.
      const child = spawn('xargs', ['-d', '\n', '-P', String(concurrency), '-n', '1', 'ssh', ...sshArgs], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`xargs ssh exited ${code}: ${err.slice(0, 400)}`))));
      child.stdin.end(lines);
    });
    const xargsMs = performance.now() - t1;

    const result: SweepBenchResult = { hosts: nHosts, concurrency, commands: recorder.argv.length, adapterMs, xargsMs, ratio: xargsMs / adapterMs, stalePorts };
    console.log(`libvirt sweep: ${nHosts} host aliases, concurrency ${concurrency}, ${result.commands} virsh commands, ${stalePorts} stale ports found`);
    console.log(`  ferry libvirt adapter (pooled SSH):  ${adapterMs.toFixed(0)} ms`);
    console.log(`  xargs -P ${concurrency} ssh … virsh …:         ${xargsMs.toFixed(0)} ms`);
    console.log(`  ratio xargs/adapter:                 ${result.ratio.toFixed(2)}x`);
    return result;
  } finally {
    client.disconnect();
    await redis.close();
    await peer.stop();
  }
}

runAsScript(import.meta, main);
