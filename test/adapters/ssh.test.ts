/**
 * The SSH layer against a real OpenSSH sshd on loopback (test/support/sshd.ts): pinned host keys,
 * key auth, pooling and reconnect, quoting, timeouts, bounded concurrency, and every fault as a
 * clear AdapterError.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SshRemoteShell, execChecked, type SshSettings, type SshShellOptions } from '../../src/adapters/ssh/index.js';
import { requirePeer, sshdAvailable, startSshd, type SshdPeer } from '../support/sshd.js';
import { eventually } from '../support/wait.js';
import { timeBound } from '../support/speed.js';
import { rejection } from '../support/rejection.js';

const haveSshd = requirePeer('sshd', sshdAvailable(), 'openssh-server (sshd) and ssh-keygen are needed for the SSH layer tests');

function fingerprintOf(pubFile: string): string {
  const out = spawnSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', pubFile], { encoding: 'utf8' }).stdout;
  return out.split(/\s+/)[1]!;
}

describe.skipIf(!haveSshd)('SshRemoteShell over a real sshd', () => {
  let peer: SshdPeer;
  let base: SshSettings;
  const shells: SshRemoteShell[] = [];
  const shell = (over: SshSettings = {}, opts: SshShellOptions = {}): SshRemoteShell => {
    const s = new SshRemoteShell({ ...base, ...over }, opts);
    shells.push(s);
    return s;
  };

  beforeAll(async () => {
    peer = await startSshd();
    base = {
      user: peer.user,
      port: peer.port,
      privateKeyPath: peer.privateKeyPath,
      knownHosts: peer.knownHostsPath,
      connectTimeout: '5s',
      commandTimeout: '20s',
      addresses: { kvm01: peer.host, kvm02: peer.host },
    };
  });
  afterAll(async () => {
    await Promise.all(shells.map((s) => s.close()));
    await peer?.stop();
  });

  it('a per-host address with its own port and user ("user@host:port") reaches the host, whatever ssh.port says', async () => {
    // Before: "127.0.0.1:36871" was taken as a host name ("cannot resolve kvm01 (127.0.0.1:36871:22)").
    const s = shell({ port: 22, user: 'nobody-by-default', addresses: { kvm01: `${peer.host}:${peer.port}`, kvm02: `${peer.user}@${peer.host}:${peer.port}` } });
    const bare = await rejection(s.exec('kvm01', ['true']));
    expect(bare.message).toMatch(new RegExp(`^SSH authentication failed for nobody-by-default@kvm01 \\(127\\.0\\.0\\.1:${peer.port}\\)`));
    expect(await s.exec('kvm02', ['sh', '-c', 'echo ok'])).toEqual({ stdout: 'ok\n', stderr: '', code: 0 });
    expect(s.endpoint('kvm02')).toEqual({ address: peer.host, port: peer.port, user: peer.user });
  });

  it('runs a command and returns stdout, stderr and the exit code', async () => {
    const res = await shell().exec('kvm01', ['sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(res).toEqual({ stdout: 'out\n', stderr: 'err\n', code: 3 });
  });

  it('quotes every argv element: shell metacharacters arrive literally', async () => {
    const nasty = `it's $HOME; rm -rf / \`id\` "x" | & > /tmp/nope`;
    const res = await shell().exec('kvm01', ['printf', '%s', nasty]);
    expect(res.code).toBe(0);
    expect(res.stdout).toBe(nasty);
  });

  it('writes stdin and closes it', async () => {
    const res = await shell().exec('kvm01', ['wc', '-c'], { stdin: 'hello\n' });
    expect(res.stdout.trim()).toBe('6');
  });

  it('execChecked turns a non-zero exit into an AdapterError with the exit code and stderr', async () => {
    const err = await rejection(execChecked(shell(), 'kvm01', 'dominfo', ['sh', '-c', 'echo "error: domain not found" >&2; exit 1']));
    expect(err.host).toBe('kvm01');
    expect(err.op).toBe('dominfo');
    expect(err.code).toBe('exit');
    expect(err.message).toMatch(/exited 1: error: domain not found/);
  });

  it('pools one connection per host and reconnects after it drops', async () => {
    const s = shell();
    const conn = async (): Promise<string> => (await s.exec('kvm01', ['sh', '-c', 'echo $SSH_CONNECTION'])).stdout.trim();
    const first = await conn();
    expect(await conn()).toBe(first);
    expect(s.connectedHosts()).toEqual(['kvm01']);
    // Kill this session's sshd process from the server side: the pooled connection dies.
    await s.exec('kvm01', ['sh', '-c', 'kill -9 $PPID']).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 200));
    const after = await conn();
    expect(after).not.toBe(first);
    expect(after.split(' ')[0]).toBe('127.0.0.1');
  });

  it('bounds concurrent commands per host', async () => {
    const s = shell({ maxConcurrentCommands: 2 });
    await s.exec('kvm02', ['true']); // connect first so the timing measures only the commands
    const started = Date.now();
    await Promise.all(Array.from({ length: 6 }, () => s.exec('kvm02', ['sleep', '0.4'])));
    const elapsed = Date.now() - started;
    // 6 commands, 2 at a time, 0.4 s each: at least 3 rounds.
    // Only the lower bound is a property; an upper bound would be a timing claim on a loaded machine.
    expect(elapsed).toBeGreaterThanOrEqual(1150);
  });

  it('refuses an unknown host key, naming the host and the key fingerprint', async () => {
    const empty = path.join(peer.dir, 'known_hosts.empty');
    fs.writeFileSync(empty, '');
    const err = await rejection(shell({ knownHosts: empty }).exec('kvm01', ['true']));
    expect(err.code).toBe('host-key');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('unknown host key for kvm01');
    expect(err.message).toContain(fingerprintOf(path.join(peer.dir, 'host_ed25519.pub')));
    expect(fs.readFileSync(empty, 'utf8')).toBe(''); // nothing recorded without TOFU
  });

  it('refuses a mismatched host key and says so loudly', async () => {
    const other = path.join(peer.dir, 'other_host');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
    const pub = fs.readFileSync(`${other}.pub`, 'utf8').split(/\s+/).slice(0, 2).join(' ');
    const kh = path.join(peer.dir, 'known_hosts.wrong');
    fs.writeFileSync(kh, `[127.0.0.1]:${peer.port} ${pub}\n`);
    const err = await rejection(shell({ knownHosts: kh }).exec('kvm01', ['true']));
    expect(err.code).toBe('host-key');
    expect(err.message).toContain('HOST KEY MISMATCH for kvm01');
    expect(err.message).toContain(fingerprintOf(path.join(peer.dir, 'host_ed25519.pub')));
    expect(err.message).toContain(fingerprintOf(`${other}.pub`));
  });

  it('accepts hashed known_hosts entries (HashKnownHosts)', async () => {
    const kh = path.join(peer.dir, 'known_hosts.hashed');
    fs.copyFileSync(peer.knownHostsPath, kh);
    expect(spawnSync('ssh-keygen', ['-H', '-f', kh]).status).toBe(0);
    expect(fs.readFileSync(kh, 'utf8')).toMatch(/^\|1\|/);
    const res = await shell({ knownHosts: kh }).exec('kvm01', ['echo', 'ok']);
    expect(res.stdout).toBe('ok\n');
  });

  it('trusts on first use only when configured, then pins the recorded key', async () => {
    const kh = path.join(peer.dir, 'known_hosts.tofu');
    const res = await shell({ knownHosts: kh, trustOnFirstUse: true }).exec('kvm01', ['echo', 'ok']);
    expect(res.stdout).toBe('ok\n');
    expect(fs.readFileSync(kh, 'utf8')).toContain(`[127.0.0.1]:${peer.port} ${peer.hostPublicKey}`);
    const again = await shell({ knownHosts: kh, trustOnFirstUse: false }).exec('kvm01', ['echo', 'pinned']);
    expect(again.stdout).toBe('pinned\n');
  });

  it('reports a rejected user key as an authentication failure', async () => {
    const stranger = path.join(peer.dir, 'stranger');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', stranger]);
    const err = await rejection(shell({ privateKeyPath: stranger }).exec('kvm01', ['true']));
    expect(err.code).toBe('auth');
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/authentication failed for .*kvm01/);
  });

  it('times out connecting to a host that accepts TCP but never speaks SSH', async () => {
    const sockets: net.Socket[] = [];
    const blackhole = net.createServer((s) => sockets.push(s)); // accepts, then silence
    await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', () => r()));
    const port = (blackhole.address() as net.AddressInfo).port;
    try {
      const started = Date.now();
      const err = await rejection(shell({ port, connectTimeout: '700ms' }).exec('kvm01', ['true']));
      expect(err.code).toBe('timeout');
      expect(err.retryable).toBe(true);
      expect(err.op).toBe('connect');
      expect(err.message).toContain('700 ms');
      const limit = timeBound(3000);
      expect(Date.now() - started, limit.why).toBeLessThan(limit.ms);
    } finally {
      sockets.forEach((s) => s.destroy());
      blackhole.close();
    }
  });

  it('reports a refused connection as retryable', async () => {
    const closed = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const err = await rejection(shell({ port: closed }).exec('kvm01', ['true']));
    expect(err.code).toBe('connection');
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/ECONNREFUSED/);
  });

  it('kills a hanging command at the command timeout and says which command (posixKill)', async () => {
    const s = shell({}, { posixKill: true });
    const marker = '31.4159';
    const started = Date.now();
    const err = await rejection(s.exec('kvm01', ['sleep', marker], { timeoutMs: 600 }));
    expect(err.code).toBe('timeout');
    expect(err.message).toContain(`sleep ${marker}`);
    expect(err.message).toContain('600 ms');
    expect(Date.now() - started, `bound from the peer's measured round trip (${peer.roundTripMs} ms)`).toBeLessThan(peer.bound(3000));
    // The remote process is gone (the kill is asynchronous, but it must happen), and the pooled
    // connection still works.
    await eventually(
      async () => (await s.exec('kvm01', ['sh', '-c', `pgrep -f '[s]leep ${marker}' || true`])).stdout.trim() === '',
      `the remote sleep ${marker} to be gone`,
      3000,
      peer.bound(3000),
    );
    expect((await s.exec('kvm01', ['echo', 'alive'])).stdout).toBe('alive\n');
  });

  it('posixKill keeps stderr clean of its pid line', async () => {
    const res = await shell({}, { posixKill: true }).exec('kvm01', ['sh', '-c', 'echo oops >&2; exit 2']);
    expect(res).toEqual({ stdout: '', stderr: 'oops\n', code: 2 });
  });

  it('cancels a running command via AbortSignal', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    const err = await rejection(shell().exec('kvm01', ['sleep', '27.18'], { signal: ac.signal }));
    expect(err.code).toBe('cancelled');
  });
});
