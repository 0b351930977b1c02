/**
 * Live-migration bench on two REAL libvirt hosts (test/peers/libvirt-pair): Ferry's `migrate
 * <vm> to <host>` (from Start to the finished operation: locks, the VM looked up again, virsh
 * migrate with domjobinfo polling, the landing checked on the target, the thread updated)
 * against a raw `ssh <source> virsh migrate --live --persistent --undefinesource` of the same
 * guest to the same URI, alternating directions, in the same run. Target: Ferry ≤ 1.1 × raw + 1 s.
 * Needs root (the pair does); without it the bench says so and is skipped.
 *
 *   npx tsx bench/libvirt-migrate.ts [--rounds 3]
 */
import { spawn } from 'node:child_process';
import { benchFerry, runAsScript, type BenchFerry } from './support.js';
import { libvirtPairMissing, startLibvirtPair } from '../test/support/libvirt-pair.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  return Number.isInteger(v) && v > 0 ? v : fallback;
}

function sh(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}: ${err.slice(0, 400)}`))));
  });
}

export async function main(): Promise<Record<string, number> | null> {
  const missing = libvirtPairMissing();
  if (missing) {
    console.log(`libvirt-migrate: skipped (${missing})`);
    return null;
  }
  const rounds = arg('rounds', 3);
  const pair = await startLibvirtPair({ fillMiB: 48 });
  const yaml = `
clusters:
  pair:
    adapter: libvirt
    hosts: [lv01, lv02]
    ssh: { privateKeyPath: ${pair.keyPath}, knownHosts: ${pair.knownHostsPath}, commandTimeout: 300s, addresses: { lv01: "${pair.addrA}:${pair.sshPort}", lv02: "${pair.addrB}:${pair.sshPort}" } }
    libvirt: { migrateUri: "qemu+ssh://root@{host}:${pair.sshPort}/system" }
groups: { operators: [alice] }
`;
  let f: BenchFerry;
  try {
    f = await benchFerry(yaml, 'bench-lvmig');
  } catch (e) {
    await pair.stop();
    throw e;
  }
  const ferry = async (target: string): Promise<number> => {
    const { op, ms } = await f.startAndWait(await f.planned(`migrate ${pair.domain} to ${target}`));
    if (op.status !== 'succeeded') throw new Error(`migrate ${op.status}: ${op.summary}`);
    return ms;
  };
  const raw = async (from: 'a' | 'b'): Promise<number> => {
    const src = from === 'a' ? pair.addrA : pair.addrB;
    const dst = from === 'a' ? pair.addrB : pair.addrA;
    const t0 = performance.now();
    await sh('ssh', ['-p', String(pair.sshPort), '-i', pair.keyPath, '-o', `UserKnownHostsFile=${pair.knownHostsPath}`, '-o', 'BatchMode=yes', `root@${src}`, `virsh migrate --live --persistent --undefinesource ${pair.domain} qemu+ssh://root@${dst}:${pair.sshPort}/system`]);
    return performance.now() - t0;
  };
  try {
    const ferryMs: number[] = [];
    const rawMs: number[] = [];
    // lvguest starts on A. Each round: Ferry A->B, raw B->A, raw A->B, Ferry B->A: same guest, both directions, interleaved.
    for (let i = 0; i < rounds; i++) {
      ferryMs.push(await ferry('lv02'));
      rawMs.push(await raw('b'));
      rawMs.push(await raw('a'));
      ferryMs.push(await ferry('lv01'));
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const f = median(ferryMs);
    const r = median(rawMs);
    const ok = f <= 1.1 * r + 1000;
    const s = (xs: number[]) => xs.map((x) => (x / 1000).toFixed(1)).join(', ');
    console.log(`live migration of ${pair.domain} (64 MiB, 48 MiB non-zero) between two real libvirt hosts, ${rounds * 2} each way, setup ${pair.setupSeconds.toFixed(1)} s`);
    console.log(`  ferry migrate (Start to done):     median ${(f / 1000).toFixed(2)} s  [${s(ferryMs)}]`);
    console.log(`  ssh … virsh migrate --live …:      median ${(r / 1000).toFixed(2)} s  [${s(rawMs)}]`);
    console.log(`  ferry/raw ${(f / r).toFixed(2)}x; target ≤ 1.1 × raw + 1 s = ${((1.1 * r + 1000) / 1000).toFixed(2)} s: ${ok ? 'met' : 'NOT met'}`);
    return { migrate_ferry_ms: Math.round(f), migrate_raw_ms: Math.round(r), migrate_ratio: Number((f / r).toFixed(3)) };
  } finally {
    await f.close();
    await pair.stop();
  }
}

runAsScript(import.meta, main);
