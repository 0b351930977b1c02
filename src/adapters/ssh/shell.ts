/**
 * RemoteShell over SSH (node-ssh / ssh2): host keys pinned from known_hosts, one pooled
 * connection per host (re-established when it drops), connect and command timeouts,
 * keep-alive, and a per-host bound on concurrent commands. Failures are AdapterErrors
 * naming the host and what failed; connection faults are retryable, refusals are not.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { NodeSSH, Config as NodeSshConfig } from 'node-ssh';
import type { SshConnectionConfig } from '../../config/schema.js';
import { durationMs } from '../../core/duration.js';
import type { Logger } from '../../log.js';
import { AdapterError } from '../types.js';
import { appendKnownHost, blobKeyType, fingerprint, hostKeyAlgorithms, lookupKnownHosts, readKnownHosts, type KnownHostKey } from './known-hosts.js';
import { Semaphore } from './semaphore.js';
import { parseSshAddress } from './address.js';
import { shellQuote, type ExecOptions, type ExecResult, type RemoteShell } from './types.js';

/** The subset of ssh2's channel we touch (ssh2 ships no types here). */
interface ChannelLike {
  close(): unknown;
  outgoing?: { id?: number; state?: string };
  _client?: { _protocol?: { signal?(id: number, name: string): unknown } };
}

/**
 * ssh2's Channel.signal() is a no-op once stdin has been ended (always, for us), so send the
 * "signal" channel request at the protocol level. OpenSSH's sshd delivers it with killpg().
 */
function killRemote(ch: ChannelLike): void {
  const id = ch.outgoing?.id;
  const proto = ch._client?._protocol;
  if (id === undefined || !proto?.signal || ch.outgoing?.state === 'closed') return;
  proto.signal(id, 'KILL');
}
interface ClientLike {
  on(event: 'error', cb: (err: Error) => void): unknown;
  on(event: 'close' | 'end', cb: () => void): unknown;
  end(): unknown;
}

export interface SshShellOptions {
  log?: Logger;
  /** Keep-alive probe interval (ms); the connection is dropped after 3 unanswered probes. */
  keepaliveMs?: number;
  /**
   * The remote login shell is POSIX (Linux/libvirt hosts): each command reports its pid on
   * stderr first, so a timed-out or cancelled command is killed with `kill -KILL <pid>` on a
   * second channel. Needed because sshd refuses the SSH "signal" request for root logins
   * ("session signalling requires privilege separation"). Leave off for Windows hosts.
   */
  posixKill?: boolean;
}

/** Prefix of the pid line posixKill makes the remote shell print on stderr. */
const PID_MARK = '\u001eferry-pid:';
const PID_LINE = /^\u001eferry-pid:(\d+)\n/;

/** Full connection settings with defaults applied (schema defaults, for callers building config by hand). */
export type SshSettings = Partial<SshConnectionConfig>;

interface PoolEntry {
  ssh: NodeSSH | null;
  connecting: Promise<NodeSSH> | null;
  sem: Semaphore;
  /** Bumped on every (re)connect so a stale close event does not drop a fresh connection. */
  generation: number;
}

const SSH2_TIMEOUT = /timed out while waiting for handshake/i;

export class SshRemoteShell implements RemoteShell {
  private readonly pool = new Map<string, PoolEntry>();
  private readonly user: string;
  private readonly port: number;
  private readonly connectTimeoutMs: number;
  private readonly commandTimeoutMs: number;
  private readonly maxConcurrent: number;
  private readonly knownHostsFile: string;
  private closed = false;

  constructor(
    private readonly settings: SshSettings = {},
    private readonly opts: SshShellOptions = {},
  ) {
    this.user = settings.user ?? 'root';
    this.port = settings.port ?? 22;
    this.connectTimeoutMs = durationMs(settings.connectTimeout ?? '10s');
    this.commandTimeoutMs = durationMs(settings.commandTimeout ?? '120s');
    this.maxConcurrent = settings.maxConcurrentCommands ?? 4;
    this.knownHostsFile = settings.knownHosts ?? path.join(os.homedir(), '.ssh', 'known_hosts');
  }

  /** The address a host name is reached at (config `addresses`, else the name itself), without user or port. */
  addressOf(host: string): string {
    return this.endpoint(host).address;
  }

  /** Address, port and user for one host: `addresses` entries may carry their own user and port. */
  endpoint(host: string): { address: string; port: number; user: string } {
    const raw = this.settings.addresses?.[host];
    const parsed = raw === undefined ? null : parseSshAddress(raw);
    // The schema refuses bad entries at start-up; one that slips through is used as written.
    const a = parsed?.ok ? parsed.value : { host: raw ?? host };
    return { address: a.host, port: a.port ?? this.port, user: a.user ?? this.user };
  }

  async exec(host: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    if (this.closed) throw new AdapterError(host, 'ssh', 'SSH shell is closed');
    if (argv.length === 0) throw new AdapterError(host, 'ssh', 'empty command');
    const quoted = argv.map(shellQuote).join(' ');
    // `exec` keeps the pid the shell printed: it becomes the command's own pid.
    const command = this.opts.posixKill ? `printf '${PID_MARK.replace('\u001e', '\\036')}%s\\n' $$ >&2; exec ${quoted}` : quoted;
    const entry = this.entry(host);
    let release: () => void;
    try {
      release = await entry.sem.acquire(opts.signal);
    } catch (err) {
      throw new AdapterError(host, 'ssh', `aborted while waiting for a command slot: ${argv[0]}`, { code: 'cancelled', cause: err });
    }
    try {
      // One retry when the pooled connection turns out dead before the command started.
      for (let attempt = 0; ; attempt++) {
        const ssh = await this.connection(host, entry);
        try {
          return await this.run(host, ssh, command, argv, opts);
        } catch (err) {
          if (err instanceof ChannelOpenError && attempt === 0) {
            this.drop(entry, ssh);
            continue;
          }
          if (err instanceof ChannelOpenError) {
            throw new AdapterError(host, 'ssh', `could not open a channel to ${host}: ${err.message}`, { retryable: true, code: 'connection', cause: err });
          }
          throw err;
        }
      }
    } finally {
      release();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const entry of this.pool.values()) {
      entry.ssh?.dispose();
      entry.ssh = null;
      if (entry.connecting) void entry.connecting.then((s) => s.dispose(), () => undefined);
    }
    this.pool.clear();
  }

  /** Open connections (for tests and diagnostics). */
  connectedHosts(): string[] {
    return [...this.pool.entries()].filter(([, e]) => e.ssh?.isConnected()).map(([h]) => h);
  }

  private entry(host: string): PoolEntry {
    let entry = this.pool.get(host);
    if (!entry) {
      entry = { ssh: null, connecting: null, sem: new Semaphore(this.maxConcurrent), generation: 0 };
      this.pool.set(host, entry);
    }
    return entry;
  }

  private drop(entry: PoolEntry, ssh: NodeSSH): void {
    if (entry.ssh === ssh) entry.ssh = null;
    ssh.dispose();
  }

  private async connection(host: string, entry: PoolEntry): Promise<NodeSSH> {
    if (entry.ssh?.isConnected()) return entry.ssh;
    if (!entry.connecting) {
      entry.connecting = this.connect(host, entry).finally(() => {
        entry.connecting = null;
      });
    }
    return entry.connecting;
  }

  private async connect(host: string, entry: PoolEntry): Promise<NodeSSH> {
    const { address, port, user } = this.endpoint(host);
    const where = `${host} (${address.includes(':') ? `[${address}]` : address}:${port})`;
    const pinned = this.pinnedKeys(host, address, port);
    let refusal: AdapterError | null = null;

    const hostVerifier = (key: Buffer): boolean => {
      const type = blobKeyType(key) ?? 'unknown';
      const fp = fingerprint(key);
      if (pinned.some((k) => k.revoked && k.blob.equals(key))) {
        refusal = new AdapterError(host, 'connect', `host key of ${where} is marked @revoked in ${this.knownHostsFile}: ${type} ${fp}`, { code: 'host-key' });
        return false;
      }
      if (pinned.some((k) => !k.revoked && k.blob.equals(key))) return true;
      if (pinned.some((k) => !k.revoked)) {
        const expected = pinned.filter((k) => !k.revoked).map((k) => `${k.type} ${fingerprint(k.blob)}`).join(', ');
        refusal = new AdapterError(
          host,
          'connect',
          `HOST KEY MISMATCH for ${where}: presented ${type} ${fp}, but ${this.knownHostsFile} pins ${expected}; refusing to connect (possible man-in-the-middle, or the host was reinstalled)`,
          { code: 'host-key' },
        );
        return false;
      }
      if (this.settings.trustOnFirstUse) {
        appendKnownHost(this.knownHostsFile, address, port, key);
        this.opts.log?.warn({ host, address, port, fingerprint: fp }, 'trust-on-first-use: recorded new SSH host key');
        return true;
      }
      refusal = new AdapterError(
        host,
        'connect',
        `unknown host key for ${where}: ${type} ${fp} is not in ${this.knownHostsFile}; pin it there (ssh-keyscan, after checking the fingerprint) or enable trustOnFirstUse`,
        { code: 'host-key' },
      );
      return false;
    };

    const config: NodeSshConfig = {
      host: address,
      port,
      username: user,
      readyTimeout: this.connectTimeoutMs,
      keepaliveInterval: this.opts.keepaliveMs ?? 15_000,
      keepaliveCountMax: 3,
      hostVerifier,
    };
    const types = pinned.filter((k) => !k.revoked).map((k) => k.type);
    // Ask for the key kinds we have pinned, as OpenSSH does; otherwise the server might offer another.
    if (types.length > 0) config.algorithms = { serverHostKey: hostKeyAlgorithms(types) };
    if (this.settings.privateKeyPath) {
      try {
        config.privateKey = fs.readFileSync(this.settings.privateKeyPath, 'utf8');
      } catch (err) {
        throw new AdapterError(host, 'connect', `cannot read SSH private key ${this.settings.privateKeyPath}: ${(err as Error).message}`, { code: 'auth', cause: err });
      }
    } else if (process.env.SSH_AUTH_SOCK) {
      config.agent = process.env.SSH_AUTH_SOCK;
    } else {
      throw new AdapterError(host, 'connect', `no SSH credentials for ${where}: set ssh.privateKeyPath or run an agent (SSH_AUTH_SOCK)`, { code: 'auth' });
    }

    // Loaded on first connection: a lab-only or vSphere-only process does not carry ssh2 (~20 MiB resident).
    const { NodeSSH } = await import('node-ssh');
    const ssh = new NodeSSH();
    const started = Date.now();
    // node-ssh relies on ssh2's readyTimeout; a guard timer covers DNS or socket stalls outside it.
    let guard: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        ssh.connect(config),
        new Promise<never>((_, reject) => {
          guard = setTimeout(() => reject(new Error('Timed out while waiting for handshake')), this.connectTimeoutMs + 1000);
        }),
      ]);
    } catch (err) {
      ssh.dispose();
      if (refusal) throw refusal;
      throw this.connectError(host, where, user, err, Date.now() - started);
    } finally {
      clearTimeout(guard);
    }
    const client = ssh.connection as ClientLike | null;
    if (!client) throw new AdapterError(host, 'connect', `connection to ${where} closed during setup`, { retryable: true, code: 'connection' });
    const generation = ++entry.generation;
    // Without a listener a late socket error would crash the process.
    client.on('error', (err) => this.opts.log?.warn({ host, err: err.message }, 'ssh connection error'));
    client.on('close', () => {
      if (entry.generation === generation && entry.ssh === ssh) entry.ssh = null;
    });
    if (this.closed) {
      ssh.dispose();
      throw new AdapterError(host, 'connect', 'SSH shell is closed');
    }
    entry.ssh = ssh;
    this.opts.log?.debug({ host, address, ms: Date.now() - started }, 'ssh connected');
    return ssh;
  }

  private pinnedKeys(host: string, address: string, port: number): KnownHostKey[] {
    let content: string;
    try {
      content = readKnownHosts(this.knownHostsFile);
    } catch (err) {
      throw new AdapterError(host, 'connect', `cannot read known_hosts ${this.knownHostsFile}: ${(err as Error).message}`, { code: 'host-key', cause: err });
    }
    const keys = lookupKnownHosts(content, address, port);
    if (address !== host) keys.push(...lookupKnownHosts(content, host, port));
    return keys;
  }

  private connectError(host: string, where: string, user: string, err: unknown, ms: number): AdapterError {
    const e = err as Error & { level?: string; code?: string };
    const msg = e?.message ?? String(err);
    if (SSH2_TIMEOUT.test(msg) || e.code === 'ETIMEDOUT') {
      return new AdapterError(host, 'connect', `connect timeout: ${where} did not complete the SSH handshake within ${this.connectTimeoutMs} ms`, { retryable: true, code: 'timeout', cause: err });
    }
    if (e.level === 'client-authentication') {
      return new AdapterError(host, 'connect', `SSH authentication failed for ${user}@${where} (${this.settings.privateKeyPath ? `key ${this.settings.privateKeyPath}` : 'agent keys'} rejected)`, { code: 'auth', cause: err });
    }
    if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN') {
      return new AdapterError(host, 'connect', `cannot resolve ${where}: ${msg}`, { retryable: e.code === 'EAI_AGAIN', code: 'dns', cause: err });
    }
    return new AdapterError(host, 'connect', `cannot connect to ${where} after ${ms} ms: ${msg}`, { retryable: true, code: 'connection', cause: err });
  }

  private async run(host: string, ssh: NodeSSH, command: string, argv: readonly string[], opts: ExecOptions): Promise<ExecResult> {
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    let stderrSoFar = '';
    if (opts.signal?.aborted) throw new AdapterError(host, 'exec', `cancelled before start: \`${argv[0]}\` on ${host}`, { code: 'cancelled' });
    let channel: ChannelLike | null = null;
    let stopped: 'timeout' | 'aborted' | null = null;
    const stop = (why: 'timeout' | 'aborted'): void => {
      if (stopped) return;
      stopped = why;
      if (!channel) return;
      // Ask sshd to kill the process group (refused for root logins), then close our end regardless.
      try {
        killRemote(channel);
      } catch {
        /* channel already gone */
      }
      killByPid();
      channel.close();
      // Settle now: a process that ignores the signal must not hold the caller (or the slot).
      bail?.();
    };
    let killed = false;
    // Also called when the pid line arrives after the stop (slow start under load).
    const killByPid = (): void => {
      const pid = PID_LINE.exec(stderrSoFar)?.[1];
      if (!pid || killed) return;
      killed = true;
      ssh.execCommand(`kill -KILL ${pid}`).catch((err: unknown) => this.opts.log?.warn({ host, pid, err: err }, 'could not kill timed-out command'));
    };
    let bail: (() => void) | undefined;
    const bailed = new Promise<'stopped'>((resolve) => {
      bail = () => resolve('stopped');
    });
    const timer = setTimeout(() => stop('timeout'), timeoutMs);
    const onAbort = (): void => stop('aborted');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    let started = false;
    try {
      const running = ssh.execCommand(command, {
        stdin: opts.stdin,
        noTrim: true,
        onStderr: (chunk: Buffer) => {
          if (stderrSoFar.length < 64) stderrSoFar += chunk.toString('latin1');
          if (stopped) killByPid();
        },
        onChannel: (ch: unknown) => {
          started = true;
          channel = ch as ChannelLike;
          if (stopped) stop(stopped);
        },
      });
      running.catch(() => undefined); // may settle after we bailed out
      const res = await Promise.race([running, bailed]);
      const label = argv.slice(0, 3).join(' ');
      if (stopped === 'timeout') {
        throw new AdapterError(host, 'exec', `command timeout: \`${label}\` on ${host} did not finish within ${timeoutMs} ms; channel closed`, { code: 'timeout' });
      }
      if (stopped === 'aborted') {
        throw new AdapterError(host, 'exec', `cancelled: \`${label}\` on ${host}`, { code: 'cancelled' });
      }
      if (res === 'stopped') throw new Error('unreachable: stopped without a reason');
      if (res.code === null && res.signal === null && !ssh.isConnected()) {
        throw new AdapterError(host, 'exec', `connection to ${host} lost while running \`${label}\``, { retryable: true, code: 'connection' });
      }
      const stderr = this.opts.posixKill ? res.stderr.replace(PID_LINE, '') : res.stderr;
      return { stdout: res.stdout, stderr, code: res.code };
    } catch (err) {
      if (err instanceof AdapterError) throw err;
      if (!started) throw new ChannelOpenError((err as Error)?.message ?? String(err));
      throw new AdapterError(host, 'exec', `SSH failure on ${host}: ${(err as Error)?.message ?? String(err)}`, { retryable: true, code: 'connection', cause: err });
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }
}

class ChannelOpenError extends Error {}
