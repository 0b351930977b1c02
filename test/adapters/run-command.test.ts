/**
 * runCommand (the command patch hook) in every adapter: the lab's simulation and its fail:hook
 * fault; libvirt's `sh -c` over a real sshd (exit codes, output, quoting, timeout kills the
 * command); Hyper-V's PowerShell as decoded from -EncodedCommand (the command only ever inside
 * one single-quoted literal, the exit code from the envelope or from `exit N`, the 8191-character
 * limit); vSphere's plain refusal. libvirt over the fake RemoteShell is in libvirt-recorded.test.ts.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { LAB_DEFAULT_YAML } from '../../src/config/lab-default.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { silentLogger } from '../../src/log.js';
import { setLabFault } from '../../src/adapters/lab/control.js';
import { HypervAdapter } from '../../src/adapters/hyperv/adapter.js';
import { MAX_COMMAND_LINE, decodeCommand, scriptMarker } from '../../src/adapters/hyperv/ps.js';
import { LibvirtAdapter } from '../../src/adapters/libvirt/index.js';
import { SshRemoteShell } from '../../src/adapters/ssh/index.js';
import { VsphereAdapter } from '../../src/adapters/vsphere/adapter.js';
import { AdapterError, UnsupportedError } from '../../src/adapters/types.js';
import { RecordingShell } from '../fixtures/hyperv/fake-shell.js';
import { requirePeer, sshdAvailable, startSshd, type SshdPeer } from '../support/sshd.js';
import { eventually } from '../support/wait.js';
import { rejection } from '../support/rejection.js';
import { readPsLiteral } from '../support/powershell.js';

describe('lab runCommand', () => {
  let rt: Runtime;
  beforeAll(() => {
    const yaml = LAB_DEFAULT_YAML.replace('latencyMs: 150', 'latencyMs: 20');
    rt = createRuntime({ loaded: parseConfig(yaml, 'test'), redisUrl: inject('redisUrl'), log: silentLogger(), prefix: `t-runcmd-lab-${process.pid}-${Date.now()}` });
  });
  afterAll(async () => rt.close());

  it('declares hostCommands and pretends to run the command in a few latencies', async () => {
    const lab = rt.adapters.forHost('hyp03');
    expect(lab.capabilities.hostCommands).toBe(true);
    const r = await lab.runCommand('hyp03', 'apt-get -y upgrade');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('$ apt-get -y upgrade');
    expect(r.stderr).toBe('');
    expect(r.durationMs).toBeGreaterThanOrEqual(55);
  });

  it('fail:hook exits 1 with a message (returned, not thrown); fail-once:hook clears after one', async () => {
    const lab = rt.adapters.forHost('hyp04');
    await setLabFault(rt.redis, rt.prefix, 'hyp04', 'fail:hook');
    for (let i = 0; i < 2; i++) {
      const r = await lab.runCommand('hyp04', 'patch');
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/the patch failed \(injected fault fail:hook\)/);
    }
    // Other operations are untouched by the hook fault.
    await expect(lab.listVms('hyp04')).resolves.toBeInstanceOf(Array);
    await setLabFault(rt.redis, rt.prefix, 'hyp04', 'fail-once:hook');
    expect((await lab.runCommand('hyp04', 'patch')).exitCode).toBe(1);
    expect((await lab.runCommand('hyp04', 'patch')).exitCode).toBe(0);
  });

  it('an unreachable host, a timeout and a cancel throw AdapterError', async () => {
    const lab = rt.adapters.forHost('hyp05');
    await setLabFault(rt.redis, rt.prefix, 'hyp05', 'unreachable');
    expect((await rejection(lab.runCommand('hyp05', 'patch'))).code).toBe('unreachable');
    await setLabFault(rt.redis, rt.prefix, 'hyp05', 'slow:200');
    expect((await rejection(lab.runCommand('hyp05', 'patch', { timeoutMs: 50 }))).code).toBe('timeout');
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 30);
    expect((await rejection(lab.runCommand('hyp05', 'patch', { signal: ctl.signal }))).code).toBe('cancelled');
    await setLabFault(rt.redis, rt.prefix, 'hyp05', null);
  });
});

describe('vSphere runCommand', () => {
  it('is unsupported, with the reason said plainly', async () => {
    const a = new VsphereAdapter({ cluster: 'esx', hosts: ['esx01'], settings: { url: 'https://vcenter.invalid/sdk', user: 'u', password: 'p' } });
    expect(a.capabilities.hostCommands).toBe(false);
    const err = await rejection(a.runCommand('esx01'));
    expect(err).toBeInstanceOf(UnsupportedError);
    expect(err.message).toBe('vsphere cannot runCommand: ESXi hosts are patched through vSphere Lifecycle Manager; use a manual hook for vSphere clusters');
    await a.close();
  });
});

describe('Hyper-V runCommand (decoded PowerShell)', () => {
  const envelope = (exit: number) => JSON.stringify({ ok: true, data: { ExitCode: exit, Seconds: 1.5 } });
  const make = (answer: ConstructorParameters<typeof RecordingShell>[0]) => {
    const shell = new RecordingShell(answer);
    return { shell, a: new HypervAdapter(shell, { cluster: 'prod-hv', hosts: ['hyp01'], failoverCluster: true }) };
  };

  it('embeds the command as one literal turned into a script block, and reports its exit code and output', async () => {
    const command = "# a comment line\n  Install-WindowsUpdate -AcceptAll; Write-Output 'it''s done' ‘x’ $(Stop-Computer) }";
    const { a, shell } = make({ 'run-command': { stdout: `Installing KB5031234\r\nit's done\r\n${envelope(3010)}\r\n`, stderr: 'WARNING: reboot required\r\n', code: 0 } });
    const r = await a.runCommand('hyp01', command, { timeoutMs: 7_200_000 });
    expect(r).toMatchObject({ exitCode: 3010, stderr: 'WARNING: reboot required\r\n' });
    expect(r.stdout).toContain('Installing KB5031234');
    expect(r.stdout).not.toContain('"ok"');
    const call = shell.calls[0]!;
    expect(call.argv.slice(0, 4)).toEqual(['powershell.exe', '-NoProfile', '-NonInteractive', '-EncodedCommand']);
    expect(call.opts?.timeoutMs).toBe(7_200_000);
    const script = decodeCommand(call.argv[4]!);
    expect(scriptMarker(script)).toBe('run-command');
    // One literal per line of the command, on one line of the script: minify (which trims lines
    // and drops '#' lines) never sees a line of the command.
    const open = '[scriptblock]::Create((@(';
    const at = script.indexOf(open) + open.length;
    const lines: string[] = [];
    let end = at;
    for (;;) {
      const lit = readPsLiteral(script, end);
      lines.push(lit.value);
      end = lit.end;
      if (script[end] !== ',') break;
      end++;
    }
    expect(script.slice(end, end + 12)).toBe(') -join "`n"');
    expect(lines.join('\n')).toBe(command);
    expect(script.slice(0, at) + script.slice(end)).not.toContain('Install-WindowsUpdate');
    // Errors inside the command must not stop the script; the envelope carries $LASTEXITCODE.
    expect(script).toMatch(/\$ErrorActionPreference='Continue'/);
    expect(script).toContain('& $c *>&1');
    expect(script).toContain('$x=[int]$global:LASTEXITCODE');
  });

  it('a command that ends the script with `exit N` still reports N and its output', async () => {
    const { a } = make({ 'run-command': { stdout: 'half way\r\n', stderr: 'boom\r\n', code: 5 } });
    const r = await a.runCommand('hyp01', 'Write-Output "half way"; exit 5');
    expect(r).toMatchObject({ exitCode: 5, stdout: 'half way\r\n', stderr: 'boom\r\n' });
  });

  it('a command too long for cmd.exe is refused with advice; SSH faults throw', async () => {
    const { a, shell } = make({ 'run-command': { throws: new AdapterError('hyp01', 'exec', 'command timeout: did not finish', { code: 'timeout' }) } });
    const long = await rejection(a.runCommand('hyp01', 'x'.repeat(MAX_COMMAND_LINE)));
    expect(long.code).toBe('too-long');
    expect(long.message).toMatch(/over cmd\.exe's 8191.*put it in a script on the host/);
    expect(shell.calls).toHaveLength(0);
    const t = await rejection(a.runCommand('hyp01', 'C:\\patch.ps1'));
    expect(t.code).toBe('timeout');
    expect(t.message).toMatch(/^runCommand on hyp01: command timeout/);
  });
});

const sshOk = requirePeer('sshd', sshdAvailable(), 'openssh-server is needed');

describe.skipIf(!sshOk)('libvirt runCommand over a real sshd', () => {
  let peer: SshdPeer;
  let redis: Redis;
  let a: LibvirtAdapter;
  beforeAll(async () => {
    peer = await startSshd();
    redis = new Redis(inject('redisUrl'));
    const shell = new SshRemoteShell(
      { user: peer.user, port: peer.port, privateKeyPath: peer.privateKeyPath, knownHosts: peer.knownHostsPath, addresses: { kvm01: peer.host }, commandTimeout: '20s' },
      { posixKill: true },
    );
    a = new LibvirtAdapter({ cluster: 'kvm', hosts: ['kvm01'], uri: 'qemu:///system', migrateUri: 'qemu+ssh://{host}/system', virsh: 'virsh', addresses: {} }, { shell, redis, prefix: `t-runcmd-kvm-${process.pid}`, log: silentLogger() });
  });
  afterAll(async () => {
    await a?.close();
    redis?.disconnect();
    await peer?.stop();
  });

  it('runs the command through sh -c: output, stderr and a non-zero exit returned', async () => {
    const r = await a.runCommand('kvm01', `printf '%s\\n' "it's $((40+2))"; echo oops >&2; exit 3`);
    expect(r).toMatchObject({ stdout: "it's 42\n", stderr: 'oops\n', exitCode: 3 });
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
    expect((await a.runCommand('kvm01', 'true')).exitCode).toBe(0);
  });

  it('a timeout kills the command on the host and throws', async () => {
    const marker = path.join(peer.dir, `hook-${Date.now()}`);
    const secs = `2.${process.pid}${Date.now() % 1000}`; // unique: no other run's sleep matches
    const err = await rejection(a.runCommand('kvm01', `sleep ${secs}; touch ${marker}`, { timeoutMs: 300 }));
    expect(err.code).toBe('timeout');
    // Killed, not left to finish: once no process of the command is left, the touch never ran.
    await eventually(() => spawnSync('pgrep', ['-f', `sleep ${secs}`]).status === 1, 'the killed command to be gone', 3000, peer.bound(3000));
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('refuses a host outside its cluster', async () => {
    expect((await rejection(a.runCommand('kvm99', 'true'))).code).toBe('unknown-host');
  });
});
