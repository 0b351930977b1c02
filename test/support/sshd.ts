/**
 * A real OpenSSH sshd for tests: loopback only, a free port, a fresh host key and user key in a
 * temp dir, public-key auth for the current user only. Works as root or not (StrictModes off,
 * no PAM, pid file in the temp dir). Extra config lines (Match blocks, ForceCommand) let a test
 * put a stand-in shell behind it, e.g. for the Hyper-V adapter:
 *
 *   const peer = await startSshd({ forceCommand: '/path/to/fake-powershell.sh' });
 *   // the client's command arrives in $SSH_ORIGINAL_COMMAND
 *
 * Independent of the machine's shell setup: sshd runs every command (ForceCommand too) as
 * `<login shell> -c <command>`, and bash started by sshd sources /etc/bash.bashrc and ~/.bashrc
 * even though it is not interactive. A root ~/.bashrc running `pyenv rehash` held each command
 * 20 s and more under load. So every session gets HOME = a fresh empty directory of the peer
 * (no ~/.bashrc, ~/.zshenv, fish config…), SHLVL=1 (bash only reads rc files for sshd when
 * SHLVL was unset, i.e. shell level < 2: this skips the system bashrc as well) and
 * PermitUserRC no (~/.ssh/rc is looked up in the passwd home, not $HOME). Proved by
 * test/support/sshd.test.ts.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './net.js';
import { slowness, timeBound } from './speed.js';

export interface SshdPeer {
  host: string;
  port: number;
  user: string;
  privateKeyPath: string;
  knownHostsPath: string;
  /** The host's public key line ("ssh-ed25519 AAAA…"). */
  hostPublicKey: string;
  dir: string;
  /** The HOME every session gets: empty, owned by the peer. */
  home: string;
  /**
   * Wall time of the readiness check: one real `ssh … true` (connect, key exchange, auth, shell).
   * A measure of how fast this machine is right now; see bound().
   */
  roundTripMs: number;
  /**
   * A time bound for something that takes about `idleMs` through this peer on an idle machine,
   * scaled by the measured round trip (and by the slowness measured when it is called, test/support/speed.ts).
   */
  bound(idleMs: number): number;
  /** sshd's stderr so far (it runs with -e). */
  log(): string;
  stop(): Promise<void>;
}

export interface SshdOptions {
  /** Run this for every session instead of the client's command (original in $SSH_ORIGINAL_COMMAND). */
  forceCommand?: string;
  /** Lines appended to sshd_config verbatim (Match blocks must come last, so they go last). */
  extraConfig?: string[];
  /** sshd LogLevel (default ERROR; VERBOSE helps when a test needs to see auth decisions). */
  logLevel?: string;
  /** Concurrent unauthenticated connections sshd accepts (the bench opens many at once). */
  maxStartups?: number;
  maxSessions?: number;
  /**
   * Keep sessions away from the user's shell rc files (default true). false only for the test
   * that proves the isolation is what keeps a hostile ~/.bashrc out.
   */
  isolateShell?: boolean;
  /** The sessions' HOME (default: an empty directory in the peer's temp dir). */
  home?: string;
}

/** Absolute path of a program on PATH (or the usual sbin spots), or null. */
export function findProgram(name: string): string | null {
  const res = spawnSync('sh', ['-c', `command -v ${name} || ls /usr/sbin/${name} /sbin/${name} 2>/dev/null`], { encoding: 'utf8' });
  const found = res.stdout.split('\n').map((l) => l.trim()).find((l) => l.startsWith('/'));
  return found ?? null;
}

/**
 * Gate a test suite on a peer program. Missing: a loud skip with the reason, or a failure when
 * FERRY_REQUIRE_PEERS=1 (CI installs every peer, so a missing one is a broken CI image).
 */
export function requirePeer(name: string, available: boolean, why = `${name} is not installed`): boolean {
  if (available) return true;
  const msg = `peer "${name}" unavailable: ${why}`;
  if (process.env.FERRY_REQUIRE_PEERS === '1') throw new Error(`${msg} (FERRY_REQUIRE_PEERS=1: every peer is required)`);
  console.warn(`\n*** SKIPPING tests that need ${name}: ${msg}. Install it (see .ci/run) to run them. ***\n`);
  return false;
}

export function sshdAvailable(): boolean {
  return findProgram('sshd') !== null && findProgram('ssh-keygen') !== null && findProgram('ssh') !== null;
}


function keygen(file: string, comment: string): void {
  const res = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`ssh-keygen failed: ${res.stderr}`);
}

/** Resolves once the port answers with an SSH banner. */
async function banner(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('data', (d) => done(d.toString('latin1').startsWith('SSH-')));
    s.once('error', () => done(false));
  });
}

export async function startSshd(options: SshdOptions = {}): Promise<SshdPeer> {
  const sshd = findProgram('sshd');
  if (!sshd) throw new Error('sshd not found (Debian: apt-get install openssh-server)');
  const user = os.userInfo().username;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-sshd-'));
  const hostKey = path.join(dir, 'host_ed25519');
  const userKey = path.join(dir, 'user_ed25519');
  keygen(hostKey, 'ferry-test-host');
  keygen(userKey, 'ferry-test-user');
  fs.copyFileSync(`${userKey}.pub`, path.join(dir, 'authorized_keys'));
  const hostPublicKey = fs.readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  // Privilege separation needs this directory when sshd starts as root.
  if (process.getuid?.() === 0) fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const home = options.home ?? path.join(dir, 'home');
  fs.mkdirSync(home, { recursive: true, mode: 0o755 });
  const isolate = options.isolateShell ?? true;

  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const config = [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      `AllowUsers ${user}`,
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin prohibit-password',
      'PrintMotd no',
      'UseDNS no',
      `MaxStartups ${options.maxStartups ?? 200}`,
      `MaxSessions ${options.maxSessions ?? 32}`,
      `LogLevel ${options.logLevel ?? 'ERROR'}`,
      'Subsystem sftp internal-sftp',
      // Only the first SetEnv line counts in sshd: keep it here, before any extraConfig.
      ...(isolate ? [`SetEnv HOME=${home} SHLVL=1`, 'PermitUserRC no'] : []),
      ...(options.forceCommand ? [`ForceCommand ${options.forceCommand}`] : []),
      ...(options.extraConfig ?? []),
    ].join('\n');
    const configPath = path.join(dir, 'sshd_config');
    fs.writeFileSync(configPath, `${config}\n`);

    const child: ChildProcess = spawn(sshd, ['-D', '-e', '-f', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    // Readiness: the listening socket answers with a banner (polled: sshd -D says nothing on
    // stdout when it is listening), then one real command round trip.
    const start = timeBound(10_000);
    const startBound = start.ms;
    const deadline = Date.now() + startBound;
    let up = false;
    while (Date.now() < deadline && child.exitCode === null) {
      if (await banner(port)) {
        up = true;
        break;
      }
      await Promise.race([new Promise((r) => setTimeout(r, 50)), exited]);
    }
    if (!up) {
      child.kill('SIGKILL');
      if (/address already in use/i.test(stderr) && attempt < 2) continue;
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`sshd did not start on 127.0.0.1:${port} within ${startBound} ms (${start.why}): ${stderr.trim() || 'no output'}`);
    }

    const knownHostsPath = path.join(dir, 'known_hosts');
    fs.writeFileSync(knownHostsPath, `[127.0.0.1]:${port} ${hostPublicKey}\n`);
    fs.chmodSync(userKey, 0o600);
    const stop = async (): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    };
    const started = Date.now();
    const probe = await new Promise<{ err: Error | null; out: string }>((resolve) =>
      execFile(
        'ssh',
        ['-F', 'none', '-i', userKey, '-p', String(port), '-o', `UserKnownHostsFile=${knownHostsPath}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', `${user}@127.0.0.1`, 'true'],
        { encoding: 'utf8', timeout: startBound },
        (err, _stdout, out) => resolve({ err, out }),
      ),
    );
    const roundTripMs = Date.now() - started;
    // ssh exits 255 for its own failures (connect, key exchange, auth); any other code is the
    // remote side's, e.g. a ForceCommand stand-in that has no scenario yet: the peer is ready.
    const code = (probe.err as (Error & { code?: unknown }) | null)?.code;
    if (probe.err && (typeof code !== 'number' || code === 255)) {
      await stop();
      throw new Error(`sshd on 127.0.0.1:${port} is up but \`ssh … true\` failed after ${roundTripMs} ms (bound ${startBound} ms, ${start.why}): ${probe.err.message} ${probe.out.trim()} ${stderr.trim()}`);
    }
    return {
      host: '127.0.0.1',
      port,
      user,
      privateKeyPath: userKey,
      knownHostsPath,
      hostPublicKey,
      dir,
      home,
      roundTripMs,
      bound: (idleMs) => peerBound(idleMs, roundTripMs),
      log: () => stderr,
      stop,
    };
  }
  throw new Error('sshd: no free port after 3 attempts');
}

/** One `ssh true` on an idle machine of the CI kind takes about this long. */
const IDLE_ROUND_TRIP_MS = 250;

/** idleMs scaled by how much slower than idle the peer answered (at least the slowness now). */
export function peerBound(idleMs: number, roundTripMs: number): number {
  return Math.round(idleMs * Math.max(slowness().factor, Math.min(10, roundTripMs / IDLE_ROUND_TRIP_MS)));
}

export { freePort };
