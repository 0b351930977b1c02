/**
 * The real workflows (find stale ports, drain + Start, restore, migrate, precheck) run through
 * handleLine and the in-process BullMQ workers on the libvirt adapter over the REAL sshd
 * (test/support/sshd.ts) with the real virsh and libvirt's test driver, one driver file per host
 * (test/fixtures/libvirt/fleet.ts). Each host has its own loopback address (127.0.0.1-3), pinned
 * in a known_hosts file, so the migrate URI names a real target address.
 *
 * RECORDED OUTPUTS: libvirt's test driver cannot migrate, has no domjobinfo, and forgets
 * nodedev-create/destroy and metadata between calls. For the `kvm` cluster those six
 * subcommands are answered by test/support/libvirt-migration-shell.ts with outputs in real
 * virsh's form (test/fixtures/libvirt/recorded/), and their effect is written into the driver
 * files; every other call (list, dominfo, dumpxml, domstate, pools, nodedev-list/dumpxml, …)
 * is real virsh over the real sshd, which is how the workflows see the VM land.
 *
 * Faults, each a per-host sentence in the thread while the rest of the sweep goes on: a host
 * key not in known_hosts, a user key sshd rejects, a host that accepts TCP and never speaks
 * SSH, a virsh that hangs past the command timeout, a virsh that exits 1, a virsh that prints
 * something that is not XML. A drain whose migration fails is rolled back for real.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libvirtAdapterFor } from '../../src/adapters/libvirt/index.js';
import type { HostSweepResult } from '../../src/jobs/workflows/find-stale-ports.js';
import { readLedger } from '../../src/jobs/drain/ledger.js';
import { readLock } from '../../src/jobs/drain/locks.js';
import type { Operation } from '../../src/jobs/operations.js';
import { VIRSH_TESTDRIVER, writeFleet, type FleetHost } from '../fixtures/libvirt/fleet.js';
import { findProgram, requirePeer, sshdAvailable, startSshd, type SshdPeer } from '../support/sshd.js';
import { makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { MigrationStandInShell, domainsIn, editLines } from '../support/libvirt-migration-shell.js';

const ok = requirePeer('sshd', sshdAvailable(), 'openssh-server is needed') && requirePeer('virsh', findProgram('virsh') !== null, 'libvirt-clients (virsh) is needed for the libvirt workflow tests');
const GOOD = ['kvm01', 'kvm02', 'kvm03'];
const ADDR: Record<string, string> = { kvm01: '127.0.0.1', kvm02: '127.0.0.2', kvm03: '127.0.0.3' };
const FAULTY = ['kvm-hang', 'kvm-exit', 'kvm-garbage', 'kvm-newkey', 'kvm-dark', 'kvm-authfail'];

describe.skipIf(!ok)('workflows on the libvirt adapter over real sshd + virsh test driver', () => {
  let peer: SshdPeer;
  let h: Harness;
  let fleetDir: string;
  let fleet: FleetHost[];
  let blackhole: net.Server;
  const held: net.Socket[] = [];
  let standIn: MigrationStandInShell | undefined;
  const fileOf = (host: string): string => path.join(fleetDir, `${host}.xml`);

  beforeAll(async () => {
    // One sshd answering on three loopback addresses (the good hosts) and a fourth whose key is not pinned.
    peer = await startSshd({ extraConfig: ['ListenAddress 127.0.0.2', 'ListenAddress 127.0.0.3', 'ListenAddress 127.0.0.5'] });
    fleetDir = path.join(peer.dir, 'fleet');
    fleet = writeFleet(fleetDir, GOOD);
    // The shared fixture puts one web VM of anti-affinity group 'web' on every host, which (rightly)
    // leaves a web VM nowhere to go in a drain; here each host's web VM has its own group.
    for (const f of fleet) editLines(fileOf(f.host), (lines) => lines.map((l) => l.replace('antiAffinity="web"', `antiAffinity="web-${f.index}"`)));
    const knownHosts = path.join(peer.dir, 'known_hosts_fleet');
    fs.writeFileSync(knownHosts, GOOD.map((h) => `[${ADDR[h]}]:${peer.port} ${peer.hostPublicKey}\n`).join(''));
    // A host that accepts the TCP connection and never sends an SSH banner.
    blackhole = net.createServer((s) => held.push(s.on('error', () => undefined)));
    await new Promise<void>((r) => blackhole.listen(peer.port, '127.0.0.6', r));
    // A user key sshd does not know.
    const wrongKey = path.join(peer.dir, 'wrong_ed25519');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrongKey]);
    // virsh faults per host, picked by the driver file in the URI; everything else is the real virsh.
    const faulty = path.join(peer.dir, 'virsh-faults.sh');
    fs.writeFileSync(
      faulty,
      [
        '#!/bin/sh',
        'case "$2" in',
        '  *kvm-hang.xml) exec sleep 300 ;;',
        `  *kvm-exit.xml) echo "error: failed to connect to the hypervisor" >&2; echo "error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory" >&2; exit 1 ;;`,
        '  *kvm-garbage.xml) echo "Name: $5"; echo "Parent: computer"; exit 0 ;;',
        'esac',
        `exec ${VIRSH_TESTDRIVER} "$@"`,
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    // Bounds for the hosts that should answer, from the peer's measured speed (a loaded machine
    // gets longer ones); the fault hosts keep their short, deliberate timeouts.
    const connectS = Math.ceil(peer.bound(5000) / 1000);
    const commandS = Math.ceil(peer.bound(30_000) / 1000);
    const ssh = (extra: string): string => `{ user: ${peer.user}, port: ${peer.port}, knownHosts: ${knownHosts}, ${extra} }`;
    const libvirt = (virsh: string): string => `{ uri: "test://${fleetDir}/{host}.xml", migrateUri: "qemu+ssh://{host}/system", virsh: ${virsh} }`;
    const yaml = `
timezone: UTC
limits: { migrationRetries: 1, migrationConcurrency: 2 }
clusters:
  kvm:
    adapter: libvirt
    hosts: [${GOOD.join(', ')}]
    ssh: ${ssh(`privateKeyPath: ${peer.privateKeyPath}, connectTimeout: ${connectS}s, commandTimeout: ${commandS}s, maxConcurrentCommands: 8, addresses: { kvm01: 127.0.0.1, kvm02: 127.0.0.2, kvm03: 127.0.0.3 }`)}
    libvirt: ${libvirt(VIRSH_TESTDRIVER)}
  kvm-edge:
    adapter: libvirt
    hosts: [kvm-exit, kvm-garbage, kvm-newkey]
    ssh: ${ssh(`privateKeyPath: ${peer.privateKeyPath}, connectTimeout: ${connectS}s, commandTimeout: ${commandS}s, addresses: { kvm-exit: 127.0.0.1, kvm-garbage: 127.0.0.1, kvm-newkey: 127.0.0.5 }`)}
    libvirt: ${libvirt(faulty)}
  kvm-silent:
    # Its own cluster: the 2 s connect timeout is meant to fire here, and only here.
    adapter: libvirt
    hosts: [kvm-dark]
    ssh: ${ssh(`privateKeyPath: ${peer.privateKeyPath}, connectTimeout: 2s, addresses: { kvm-dark: 127.0.0.6 }`)}
    libvirt: ${libvirt(faulty)}
  kvm-slow:
    # Its own cluster: a 3 s command timeout would cut the other fault hosts short on a loaded machine.
    adapter: libvirt
    hosts: [kvm-hang]
    ssh: ${ssh(`privateKeyPath: ${peer.privateKeyPath}, commandTimeout: 3s, addresses: { kvm-hang: 127.0.0.1 }`)}
    libvirt: ${libvirt(faulty)}
  kvm-badkey:
    adapter: libvirt
    hosts: [kvm-authfail]
    ssh: ${ssh(`privateKeyPath: ${wrongKey}, connectTimeout: ${connectS}s, addresses: { kvm-authfail: 127.0.0.1 }`)}
    libvirt: ${libvirt(VIRSH_TESTDRIVER)}
groups:
  operators: [alice, bob, carol, dave]
  approvers: [bob, carol]
console: { user: alice }
`;
    // The kvm cluster's shell gets the stand-in for what the test driver cannot do (see the header).
    h = await makeHarness({
      yaml,
      prefix: uniquePrefix('wf-libvirt'),
      adapters: {
        libvirt: (ctx) =>
          libvirtAdapterFor(
            ctx,
            ctx.cluster === 'kvm'
              ? { wrapShell: (shell) => (standIn = new MigrationStandInShell(shell, { hostByAddress: Object.fromEntries(GOOD.map((g) => [ADDR[g], g])), fileOf, migrationMs: 1200 })) }
              : {},
          ),
      },
    });
  });

  afterAll(async () => {
    await h?.close();
    for (const s of held) s.destroy();
    await new Promise((r) => blackhole?.close(r));
    await peer?.stop();
  });

  const newest = (): Promise<Operation> => h.waitFor(async () => (await h.deps.ops.recent(1))[0], 'an operation');
  const planned = (line: string): Promise<Operation> => h.planned(line, { timeoutMs: 60_000 });
  /**
   * What an operator does after the precheck's sentences: clear the CPU pinning and copy the
   * mounted ISO to the shared pool. The test driver's state lives in its file, so that is an edit there.
   */
  const makeMovable = (host: string, vm: string): boolean =>
    editLines(fileOf(host), (lines) => lines.map((l) => (l.includes(`<name>${vm}</name>`) ? l.replace(" cpuset='0-3'", '').replace("'/iso/tools.iso'", "'/san/iso/tools.iso'") : l)));

  it('find stale ports: the unused vHBA of each host, and every fault a per-host sentence while the others are swept', async () => {
    const t0 = Date.now();
    await h.run(`find stale ports ${[...GOOD, ...FAULTY].join(',')}`);
    const op = await h.waitForOp(undefined, 90_000);
    expect(op.status).toBe('partial');
    const results = await h.deps.ops.results<HostSweepResult>(op.id);
    for (const [i, host] of GOOD.entries()) {
      const r = results[host]!;
      expect(r.ok, `${host}: ${JSON.stringify(r)}`).toBe(true);
      if (r.ok) expect(r.stale.map((p) => p.wwpn)).toEqual([fleet[i]!.staleVhbaWwpn]);
    }
    const err = (host: string): string => {
      const r = results[host];
      if (!r || r.ok) throw new Error(`${host} should have failed: ${JSON.stringify(r)}`);
      return r.error;
    };
    // Each row leads with what its kind says about the host (hostFailureSentence), then the platform's words.
    const AUTH = "refused Ferry's login or its host key did not match";
    expect(err('kvm-newkey')).toMatch(new RegExp(`^kvm-newkey ${AUTH} \\(unknown host key for`));
    expect(err('kvm-newkey')).toMatch(/\(unknown host key for kvm-newkey \(127\.0\.0\.5:\d+\): ssh-ed25519 SHA256:\S+ is not in .*known_hosts_fleet; pin it there/);
    expect(err('kvm-authfail')).toMatch(new RegExp(`^kvm-authfail ${AUTH} \\(SSH authentication failed`));
    expect(err('kvm-authfail')).toMatch(/\(SSH authentication failed for \S+@kvm-authfail \(127\.0\.0\.1:\d+\) \(key .*wrong_ed25519 rejected\)/);
    expect(err('kvm-dark')).toMatch(/^kvm-dark did not answer in time \(connect timeout: kvm-dark \(127\.0\.0\.6:\d+\) did not complete the SSH handshake within 2000 ms/);
    expect(err('kvm-hang')).toMatch(/^kvm-hang did not answer in time \(command timeout: `.*virsh-faults\.sh -c test:.*` on kvm-hang did not finish within 3000 ms; channel closed/);
    expect(err('kvm-exit')).toMatch(/^kvm-exit answered with an error \(`.*on kvm-exit exited 1: error: failed to connect to the hypervisor \| error: Failed to connect socket/);
    expect(err('kvm-garbage')).toMatch(/^kvm-garbage answered something Ferry could not read \(unexpected output from virsh on kvm-garbage: /);

    // Posts arrive over pub/sub after the operation ended: wait for the summary, then read.
    const text = await h.waitForText('3 stale ports on 3 hosts (of 3 swept); 6 hosts could not be swept.');
    for (const [i, host] of GOOD.entries()) expect(text).toMatch(new RegExp(`${host}\\s+${fleet[i]!.staleVhbaWwpn}\\s+100000C0DD00AA01\\s+${fleet[i]!.hbaWwpn}`));
    for (const host of FAULTY) expect(text).toMatch(new RegExp(`\\n\\s+${host}\\s+${host} `));
    expect(text).toContain('type: remove stale ports');
    // The hang was cut at the command timeout, the silent host at the connect timeout (with one retry).
    expect(Date.now() - t0, `a bound of ${peer.bound(60_000)} ms from the peer's measured round trip (${peer.roundTripMs} ms)`).toBeLessThan(peer.bound(60_000));
  });

  it('drain kvm01: refused on real facts, then every movable VM moves (non-HA ones too: libvirt has no seed 001 rule); restore brings them home', async () => {
    const f = fleet[0]!;
    // db carries CPU pinning: the first drain is refused. scratch is a running non-HA
    // (transient) domain: libvirt maintenance saves nothing, Ferry migrates it like any other.
    await h.run('drain kvm01');
    const refused = await h.waitForOp(undefined, 90_000);
    expect(refused.status).toBe('failed');
    let text = await h.waitForText(`${f.vms.db} cannot move: no host of kvm can take it`);
    expect(text).toContain(`${f.vms.db} cannot move: no host of kvm can take it`);
    expect(text).toContain(`${f.vms.db} cannot move live to kvm02: its CD-ROM drive has /iso/tools.iso mounted, which kvm02 cannot see`);
    expect(text).not.toMatch(/port group 'prod' is untagged/); // web's own VLAN tag moves with it
    expect(text).not.toContain(`${f.vms.scratch} is running and not highly available`);
    expect(text).not.toContain('drain kvm01 save-non-ha');
    expect(await h.rt.redis.exists(`${h.rt.prefix}:libvirt:cordon:kvm01`)).toBe(0);

    expect(makeMovable('kvm01', f.vms.db)).toBe(true);
    const op = await planned('drain kvm01');
    await h.run(`start ${op.id}`);
    const done = await h.waitForOp(op.id, 90_000);
    text = await h.waitForText(/kvm01 drained in |drain of kvm01 failed/);
    expect(done.status, text).toBe('succeeded');
    expect(done.summary).toBe('3 moved, 1 skipped, 0 failed');
    // Real virsh over sshd: kvm01 keeps only the powered-off domain.
    expect(domainsIn(fileOf('kvm01')).sort()).toEqual([f.vms.batch]);
    const movedTo = (vm: string): string | undefined => GOOD.find((g) => g !== 'kvm01' && domainsIn(fileOf(g)).includes(vm));
    expect(movedTo(f.vms.web)).toBeDefined();
    expect(movedTo(f.vms.db)).toBeDefined();
    const vms = await h.rt.adapters.forHost('kvm01').listVms(movedTo(f.vms.web)!);
    // Seed 002: the pair swapped roles on the target, the source's primary vHBA is gone, nothing lingers.
    expect(vms.find((v) => v.name === f.vms.web)?.vfc[0]?.wwpns).toEqual([f.secondaryWwpn, f.usedVhbaWwpn]);
    expect(fs.readFileSync(fileOf('kvm01'), 'utf8')).not.toContain(f.usedVhbaWwpn);
    expect(text).not.toContain('left 1 virtual Fibre Channel port behind');
    expect(text).toMatch(/kvm01 is in maintenance: no new VMs land on it/);
    expect(text).toMatch(/kvm01 drained in .*: 3 moved, 1 skipped, 0 failed/);
    expect(await h.rt.redis.exists(`${h.rt.prefix}:libvirt:cordon:kvm01`)).toBe(1);
    expect((await readLedger(h.rt, 'kvm01'))?.status).toBe('drained');
    expect(standIn!.calls.some((c) => /^kvm01: migrate --live --persistent --undefinesource --domain db-kvm01 --desturi qemu\+ssh:\/\/127\.0\.0\.[23]\/system$/.test(c))).toBe(true);
  });

  it('restore kvm01: leaves the cordon and brings the three VMs home over real virsh', async () => {
    const f = fleet[0]!;
    await h.run('restore kvm01');
    const r = await h.waitForOp((await newest()).id, 90_000);
    expect(r.status, h.transcript()).toBe('succeeded');
    await h.waitForText(/kvm01 restored in /);
    expect(domainsIn(fileOf('kvm01')).sort()).toEqual([f.vms.batch, f.vms.db, f.vms.scratch, f.vms.web].sort());
    expect(await h.rt.redis.exists(`${h.rt.prefix}:libvirt:cordon:kvm01`)).toBe(0);
    await h.waitForText(/kvm01 restored in .*: 3 VMs back home, 1 already there/);
    expect((await readLedger(h.rt, 'kvm01'))?.status).toBe('restored');
    expect(await readLock(h.rt, 'kvm01')).toBeNull();
  });

  it('precheck names the real blocker; migrate moves an NPIV VM after Start', async () => {
    const f2 = fleet[1]!;
    const f3 = fleet[2]!;
    await h.run(`precheck ${f3.vms.db} to kvm01`);
    const pre = await h.waitForOp((await newest()).id, 90_000);
    expect(pre.status).toBe('failed');
    await h.waitForText(`${f3.vms.db} cannot move live to kvm01: its CD-ROM drive`);
    await h.waitForText(`${f3.vms.db} cannot move live to kvm01: it has CPU affinity set, which pins it to kvm03; clear it first.`);
    await h.waitForText(`${f3.vms.db} cannot move live to kvm01: its CD-ROM drive has /iso/tools.iso mounted, which kvm01 cannot see`);

    const op = await planned(`migrate ${f2.vms.web} to kvm01`);
    await h.run(`start ${op.id}`);
    const done = await h.waitForOp(op.id, 90_000);
    expect(done.status, h.transcript()).toBe('succeeded');
    await h.waitForText(new RegExp(`${f2.vms.web} moved live from kvm02 to kvm01 in `));
    expect(domainsIn(fileOf('kvm01'))).toContain(f2.vms.web);
    expect(domainsIn(fileOf('kvm02'))).not.toContain(f2.vms.web);
    const inv = await h.rt.adapters.forHost('kvm01').npivInventory('kvm01');
    expect(inv.endpointOwners?.[f2.secondaryWwpn]).toBe(f2.vms.web);
    expect(standIn!.calls.filter((c) => c.startsWith('kvm02: domjobinfo')).length).toBeGreaterThan(0);
  });

  it('a migration that fails during a drain is rolled back: the adapter undoes its vHBA, the moved VM comes home, the host leaves maintenance', async () => {
    const f = fleet[2]!;
    expect(makeMovable('kvm03', f.vms.db)).toBe(true);
    standIn!.failMigrate.add(f.vms.web);
    try {
      const before = domainsIn(fileOf('kvm03')).sort();
      const op = await planned('drain kvm03 rollback auto');
      await h.run(`start ${op.id}`);
      const done = await h.waitForOp(op.id, 90_000);
      const text = await h.waitForText(/drain of kvm03 failed .* and was rolled back|kvm03 drained in /);
      expect(done.status, text).toBe('failed');
      expect(text).toMatch(new RegExp(`${f.vms.web} could not move to kvm0[12] after 1 attempt: \\S*virsh-testdriver\\.sh -c test:\\S+ migrate\\S* on kvm03 exited 1: error: operation failed: migration out job: unexpectedly failed`));
      expect(text).toMatch(/Rolling back job \d+: kvm03 leaves maintenance/);
      expect(text).toMatch(/Rolled back job \d+: \d+ VMs? (is|are) back on kvm03 and kvm03 is out of maintenance/);
      expect(text).toMatch(/drain of kvm03 failed \(web-kvm03\) and was rolled back/);
      // Real virsh: every domain where it started; the vHBA created on the target for the failed move is gone again.
      expect(domainsIn(fileOf('kvm03')).sort()).toEqual(before);
      for (const g of ['kvm01', 'kvm02']) expect(fs.readFileSync(fileOf(g), 'utf8')).not.toContain(f.secondaryWwpn);
      expect(standIn!.calls.some((c) => /^kvm0[12]: nodedev-destroy/.test(c))).toBe(true);
      expect(await h.rt.redis.exists(`${h.rt.prefix}:libvirt:cordon:kvm03`)).toBe(0);
      expect((await readLedger(h.rt, 'kvm03'))?.status).toBe('rolled-back');
      expect(await readLock(h.rt, 'kvm03')).toBeNull();
    } finally {
      standIn!.failMigrate.delete(f.vms.web);
    }
  });
});
