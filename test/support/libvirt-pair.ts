/**
 * Two REAL libvirt hosts on loopback for tests (scripts in test/peers/libvirt-pair/, see its README): a
 * root libvirtd + sshd per "host", each in its own mount namespace, QEMU under TCG, a 64 MiB
 * guest `lvguest` running on host A. Live migration, domjobinfo and domjobabort are real here;
 * NPIV is not (this kernel has no SCSI layer), so NPIV stays on recorded outputs and the test
 * driver (test/adapters/libvirt-recorded.test.ts, test/e2e/workflows-libvirt.test.ts).
 *
 * startLibvirtPair() runs setup.sh (idempotent; it also brings the guests back to "lvguest on A,
 * nothing on B"), stop() runs teardown.sh, which ends every process and removes every mount
 * point, user and file the setup made. Needs root (unshare --mount, nsenter, useradd).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { findProgram } from './sshd.js';

const DIR = path.resolve(import.meta.dirname, '../peers/libvirt-pair');

export interface LibvirtPair {
  base: string;
  sshPort: number;
  addrA: string;
  addrB: string;
  keyPath: string;
  knownHostsPath: string;
  domain: string;
  /** Domain XML of the guest that keeps dirtying its memory (its migration converges only with bandwidth to spare). */
  dirtyXml: string;
  /** Seconds setup.sh took (the last run). */
  setupSeconds: number;
  /** virsh straight to one host's daemon over its unix socket, as root, no SSH: the tests' own view. */
  virsh(host: 'a' | 'b', args: string[]): { code: number; stdout: string; stderr: string };
  /** Names of the domains a host has (all states). */
  domains(host: 'a' | 'b'): string[];
  /** `domstate` of a domain, or null when the host has none of that name. */
  state(host: 'a' | 'b', dom: string): string | null;
  persistent(host: 'a' | 'b', dom: string): boolean;
  /** Run setup.sh again: lvguest back on A, everything else gone. */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

/** Why the pair cannot run here, or null. */
export function libvirtPairMissing(): string | null {
  if (process.getuid?.() !== 0) return 'the libvirt pair needs root (unshare --mount, nsenter, useradd)';
  for (const p of ['qemu-system-x86_64', 'libvirtd', 'virsh', 'sshd', 'unshare', 'nsenter']) {
    if (!findProgram(p)) return `${p} is not installed (qemu-system-x86, libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients, openssh-server)`;
  }
  return null;
}

function run(script: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; out: string; seconds: number }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(DIR, script)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} did not finish within ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, seconds: (Date.now() - t0) / 1000 });
    });
  });
}

export async function startLibvirtPair(opts: { fillMiB?: number; setupTimeoutMs?: number } = {}): Promise<LibvirtPair> {
  const env: NodeJS.ProcessEnv = { LVPAIR_FILL_MIB: String(opts.fillMiB ?? 8) };
  const setupTimeoutMs = opts.setupTimeoutMs ?? 180_000;
  const setup = async (): Promise<number> => {
    const r = await run('setup.sh', env, setupTimeoutMs);
    if (r.code !== 0) throw new Error(`libvirt pair setup failed (exit ${r.code}):\n${r.out}`);
    return r.seconds;
  };
  let setupSeconds: number;
  try {
    setupSeconds = await setup();
  } catch (err) {
    // Whatever half started goes away again before the error is reported.
    await run('teardown.sh', {}, 120_000).catch(() => undefined);
    throw err;
  }
  const facts = Object.fromEntries(
    fs
      .readFileSync('/tmp/lvpair/env', 'utf8')
      .split('\n')
      .flatMap((l) => [...l.matchAll(/(LVPAIR_[A-Z_]+)='?([^' ]*)'?/g)].map((m) => [m[1]!, m[2]!])),
  );
  const sock = (x: 'a' | 'b'): string => (x === 'a' ? facts.LVPAIR_LOCAL_URI_A! : facts.LVPAIR_LOCAL_URI_B!);
  const virsh = (x: 'a' | 'b', args: string[]) => {
    const r = spawnSync('virsh', ['-q', '-c', sock(x), ...args], { encoding: 'utf8', timeout: 60_000 });
    return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  };
  const pair: LibvirtPair = {
    base: '/tmp/lvpair',
    sshPort: Number(facts.LVPAIR_SSH_PORT),
    addrA: facts.LVPAIR_HOST_A!,
    addrB: facts.LVPAIR_HOST_B!,
    keyPath: facts.LVPAIR_SSH_KEY!,
    knownHostsPath: facts.LVPAIR_KNOWN_HOSTS!,
    domain: facts.LVPAIR_DOMAIN!,
    dirtyXml: facts.LVPAIR_DIRTY_XML!,
    get setupSeconds() {
      return setupSeconds;
    },
    virsh,
    domains: (x) => virsh(x, ['list', '--all', '--name']).stdout.split('\n').map((s) => s.trim()).filter(Boolean),
    state(x, dom) {
      const r = virsh(x, ['domstate', dom]);
      return r.code === 0 ? r.stdout.trim() : null;
    },
    persistent: (x, dom) => /Persistent:\s+yes/.test(virsh(x, ['dominfo', dom]).stdout),
    async reset() {
      setupSeconds = await setup();
    },
    async stop() {
      const r = await run('teardown.sh', {}, 180_000);
      if (r.code !== 0) throw new Error(`libvirt pair teardown failed (exit ${r.code}):\n${r.out}`);
    },
  };
  return pair;
}
