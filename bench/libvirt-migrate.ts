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
import { pathToFileURL } from 'node:url';
import { startPrivateRedis } from '../test/support/redis-server.js';
import { parseConfig } from '../src/config/load.js';
import { createRuntime } from '../src/runtime.js';
import { createFerry } from '../src/ferry.js';
import { startWorkers } from '../src/jobs/worker.js';
import { handleLine } from '../src/bot/commands.js';
import type { Message } from '../src/chat/messages.js';
import { inThread, type Conversation } from '../src/chat/conversation.js';
import { silentLogger } from '../src/log.js';
import { FINISHED, type Operation } from '../src/jobs/operations.js';
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
  const redis = await startPrivateRedis();
  const yaml = `
clusters:
  pair:
    adapter: libvirt
    hosts: [lv01, lv02]
    ssh: { privateKeyPath: ${pair.keyPath}, knownHosts: ${pair.knownHostsPath}, commandTimeout: 300s, addresses: { lv01: "${pair.addrA}:${pair.sshPort}", lv02: "${pair.addrB}:${pair.sshPort}" } }
    libvirt: { migrateUri: "qemu+ssh://root@{host}:${pair.sshPort}/system" }
groups: { operators: [alice] }
`;
  const rt = createRuntime({ loaded: parseConfig(yaml, 'bench', {}), redisUrl: redis.url, log: silentLogger(), prefix: 'bench-lvmig' });
  const deps = createFerry(rt, 'all', { env: {} });
  const workers = await startWorkers(deps);
  const conv: Conversation = { surface: 'console', session: 'bench', user: 'alice' };
  const run = (text: string) =>
    handleLine(deps, {
      text,
      user: 'alice',
      conv,
      channel: 'console',
      refuse: async (s) => {
        throw new Error(`refused: ${s}`);
      },
      answer: async (msg: Message) => inThread(conv, await deps.outbox.post(conv, msg)),
    });
  const until = async (probe: () => Promise<Operation | undefined>): Promise<Operation> => {
    for (;;) {
      const op = await probe();
      if (op) return op;
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const ferry = async (target: string): Promise<number> => {
    const before = (await deps.ops.recent(1))[0]?.id ?? 0;
    await run(`migrate ${pair.domain} to ${target}`);
    const planned = await until(async () => {
      const [op] = await deps.ops.recent(1);
      if (op && op.id > before && FINISHED.includes(op.status)) throw new Error(`migrate ended ${op.status}: ${op.summary}`);
      return op && op.id > before && op.params.stage === 'awaiting-start' ? op : undefined;
    });
    const t0 = performance.now();
    await run(`start ${planned.id}`);
    const done = await until(async () => {
      const op = await deps.ops.get(planned.id);
      return op && FINISHED.includes(op.status) ? op : undefined;
    });
    if (done.status !== 'succeeded') throw new Error(`migrate ${done.status}: ${done.summary}`);
    return performance.now() - t0;
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
    await workers.close();
    await deps.close();
    await rt.close();
    await redis.stop();
    await pair.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
