/**
 * A real OpenSSH sshd for tests: loopback only, a free port, a fresh host key and user key in a
 * temp dir, public-key auth for the current user only. Works as root or not (StrictModes off,
 * no PAM, pid file in the temp dir). Extra config lines (Match blocks, ForceCommand) let a test
 * put a stand-in shell behind it, e.g. for the Hyper-V adapter:
 *
 *   const peer = await startSshd({ forceCommand: '/path/to/fake-powershell.sh' });
 *   // the client's command arrives in $SSH_ORIGINAL_COMMAND
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './net.js';

export interface SshdPeer {
  host: string;
  port: number;
  user: string;
  privateKeyPath: string;
  knownHostsPath: string;
  /** The host's public key line ("ssh-ed25519 AAAA…"). */
  hostPublicKey: string;
  dir: string;
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
  return findProgram('sshd') !== null && findProgram('ssh-keygen') !== null;
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
      ...(options.forceCommand ? [`ForceCommand ${options.forceCommand}`] : []),
      ...(options.extraConfig ?? []),
    ].join('\n');
    const configPath = path.join(dir, 'sshd_config');
    fs.writeFileSync(configPath, `${config}\n`);

    const child: ChildProcess = spawn(sshd, ['-D', '-e', '-f', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 10_000;
    let up = false;
    while (Date.now() < deadline && child.exitCode === null) {
      if (await banner(port)) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!up) {
      child.kill('SIGKILL');
      if (/address already in use/i.test(stderr) && attempt < 2) continue;
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`sshd did not start on 127.0.0.1:${port}: ${stderr.trim() || 'no output'}`);
    }

    const knownHostsPath = path.join(dir, 'known_hosts');
    fs.writeFileSync(knownHostsPath, `[127.0.0.1]:${port} ${hostPublicKey}\n`);
    fs.chmodSync(userKey, 0o600);
    return {
      host: '127.0.0.1',
      port,
      user,
      privateKeyPath: userKey,
      knownHostsPath,
      hostPublicKey,
      dir,
      log: () => stderr,
      async stop() {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
        }
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  throw new Error('sshd: no free port after 3 attempts');
}

export { freePort };
