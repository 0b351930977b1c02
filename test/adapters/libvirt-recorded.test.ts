/**
 * What libvirt's test driver cannot do — `migrate`, `domjobinfo`, `domjobabort`, stateful
 * `nodedev-create`/`nodedev-destroy`, real CPU capabilities — driven through a FAKE RemoteShell
 * that models two hosts and answers with outputs in the form real virsh prints
 * (test/fixtures/libvirt/recorded/, see its README). No sshd here: this suite checks the exact
 * argv the adapter sends, seed 002's vHBA pair order, rollback and cancel.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { LibvirtAdapter } from '../../src/adapters/libvirt/index.js';
import { parseDomjobinfo } from '../../src/adapters/libvirt/parse.js';
import type { ExecOptions, ExecResult, RemoteShell } from '../../src/adapters/ssh/types.js';
import { AdapterError, UnsupportedError, type MigrateProgress } from '../../src/adapters/types.js';
import { silentLogger } from '../../src/log.js';
import { eventually } from '../support/wait.js';

const REC = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/libvirt/recorded');
const rec = (f: string): string => fs.readFileSync(path.join(REC, f), 'utf8');
const PREFIX = `ferry-test-libvirt-rec-${process.pid}`;

const P = 'C003FF6EDB4A0004'; // primary WWPN, in use on the source
const S = 'C003FF6EDB4A0005'; // secondary WWPN, reserved on the source (seed 002)
const WWNN = 'C003FF0000000001';

const ok = (stdout = ''): ExecResult => ({ stdout, stderr: '', code: 0 });
const fail = (stderr: string): ExecResult => ({ stdout: '', stderr, code: 1 });

const domXml = (name: string): string => `<domain type='kvm' id='7'>
  <name>${name}</name>
  <uuid>6a1e3b9c-2f41-4d7a-9a55-0c1d2e3f4a5b</uuid>
  <metadata>
    <ferry:vm xmlns:ferry="https://ferry.dev/xmlns/1" ha="true">
      <ferry:vhba wwnn="${WWNN}" wwpn="${P}" secondary="${S}" fabric="100000C0DD00AA01" name="vfc0"/>
    </ferry:vm>
  </metadata>
  <memory unit='KiB'>8388608</memory>
  <vcpu placement='static'>4</vcpu>
  <devices>
    <disk type='block' device='lun'><driver name='qemu' type='raw'/><source dev='/dev/disk/by-id/wwn-0x600a098038303053'/><target dev='sda' bus='scsi'/></disk>
  </devices>
</domain>`;

const dominfo = (name: string, state = 'running'): string =>
  `Id:             7\nName:           ${name}\nUUID:           6a1e3b9c-2f41-4d7a-9a55-0c1d2e3f4a5b\nOS Type:        hvm\nState:          ${state}\nCPU(s):         4\nCPU time:       123.4s\nMax memory:     8388608 KiB\nUsed memory:    8388608 KiB\nPersistent:     yes\nAutostart:      disable\nManaged save:   no\nSecurity model: apparmor\nSecurity DOI:   0\n\n`;

const vhbaXml = (name: string, hostNo: number, wwpn: string): string =>
  `<device>\n  <name>${name}</name>\n  <parent>scsi_host5</parent>\n  <capability type='scsi_host'>\n    <host>${hostNo}</host>\n    <unique_id>${hostNo}</unique_id>\n    <capability type='fc_host'>\n      <wwnn>${WWNN.toLowerCase()}</wwnn>\n      <wwpn>${wwpn.toLowerCase()}</wwpn>\n      <fabric_wwn>100000c0dd00aa01</fabric_wwn>\n    </capability>\n  </capability>\n</device>\n`;

interface FakeHost {
  domains: Map<string, string>; // name -> state
  devices: Map<string, string>; // nodedev name -> xml
  nextHost: number;
}

/** A fake RemoteShell modelling virsh on two hosts; records every argv. */
class FakeVirsh implements RemoteShell {
  calls: { host: string; argv: string[]; stdin?: string }[] = [];
  hosts: Record<string, FakeHost> = {};
  migrate: (signal?: AbortSignal) => Promise<ExecResult> = async () => ok();
  destroyFails = new Set<string>();

  constructor() {
    for (const h of ['kvm01', 'kvm02']) {
      this.hosts[h] = { domains: new Map(), devices: new Map([['scsi_host5', rec('nodedev-hba.xml')]]), nextHost: 20 };
    }
    this.hosts['kvm01']!.domains.set('web01', 'running');
    this.hosts['kvm01']!.devices.set('scsi_host9', vhbaXml('scsi_host9', 9, P));
    this.hosts['kvm01']!.devices.set('scsi_host11', vhbaXml('scsi_host11', 11, S));
  }

  mutations(): string[] {
    return this.calls.filter((c) => c.argv[0] === 'sh' || /^(nodedev-create|nodedev-destroy|migrate|domjobabort|metadata)$/.test(c.argv[3] ?? '')).map((c) => `${c.host}: ${c.argv[0] === 'sh' ? c.argv.slice(3).join(' ') : c.argv.slice(3).join(' ')}`);
  }

  async exec(host: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    this.calls.push({ host, argv: [...argv], stdin: opts.stdin });
    const h = this.hosts[host]!;
    if (argv[0] === 'sh') return ok(); // sysfs vport_delete
    const [cmd, ...rest] = argv.slice(3);
    const arg = (flag: string): string => rest[rest.indexOf(flag) + 1]!;
    switch (cmd) {
      case 'list':
        return ok([...h.domains.keys()].join('\n') + '\n\n');
      case 'dominfo':
        return ok(dominfo(arg('--domain'), h.domains.get(arg('--domain'))));
      case 'domstate':
        return h.domains.has(arg('--domain')) ? ok(`${h.domains.get(arg('--domain'))}\n\n`) : fail(`error: failed to get domain '${arg('--domain')}'`);
      case 'dumpxml':
        return ok(domXml(arg('--domain')));
      case 'domblkinfo':
        return ok(' Target   Capacity       Allocation     Physical\n---------------------------------------------------------\n sda      107374182400   107374182400   107374182400\n\n');
      case 'pool-list':
      case 'net-list':
        return ok('\n');
      case 'nodeinfo':
        return ok(rec('nodeinfo.txt'));
      case 'capabilities':
        return ok(rec('capabilities-skylake.xml'));
      case 'nodedev-list':
        return ok([...h.devices.keys()].filter((n) => (arg('--cap') === 'vports' ? n === 'scsi_host5' : true)).join('\n') + '\n\n');
      case 'nodedev-dumpxml':
        return h.devices.has(arg('--device')) ? ok(h.devices.get(arg('--device'))) : fail(`error: Could not find matching device '${arg('--device')}'`);
      case 'nodedev-create': {
        const wwpn = /<wwpn>([0-9A-F]+)<\/wwpn>/.exec(opts.stdin ?? '')![1]!;
        const name = `scsi_host${h.nextHost}`;
        h.devices.set(name, vhbaXml(name, h.nextHost++, wwpn));
        return ok(`Node device ${name} created from /dev/stdin\n\n`);
      }
      case 'nodedev-destroy': {
        const name = arg('--device');
        if (this.destroyFails.has(name)) return fail(`error: Failed to destroy node device '${name}'\nerror: Write of '${P}:${WWNN}' to '/sys/class/fc_host/host5/vport_delete' during vport create/delete failed: No such device`);
        h.devices.delete(name);
        return ok(`Destroyed node device '${name}'\n\n`);
      }
      case 'migrate': {
        const res = await this.migrate(opts.signal);
        if (res.code === 0) {
          const dom = arg('--domain');
          h.domains.delete(dom);
          this.hosts['kvm02']!.domains.set(dom, 'running');
        }
        return res;
      }
      case 'domjobinfo':
        return ok(rec('domjobinfo-migrating.txt'));
      case 'domjobabort':
        this.aborted = true;
        return ok();
      case 'metadata':
        return ok('Metadata modified\n');
      default:
        return fail(`error: unknown command '${cmd}'`);
    }
  }
  aborted = false;
  async close(): Promise<void> {}
}

describe('libvirt adapter on recorded virsh outputs (fake RemoteShell: the test driver has no migrate/domjobinfo)', () => {
  let redis: Redis;
  beforeAll(() => {
    redis = new Redis(inject('redisUrl'));
  });
  afterAll(() => redis.disconnect());

  const make = (shell: RemoteShell): LibvirtAdapter =>
    new LibvirtAdapter(
      { cluster: 'kvm', hosts: ['kvm01', 'kvm02'], uri: 'qemu:///system', migrateUri: 'qemu+ssh://{host}/system', virsh: 'virsh', addresses: { kvm02: '10.0.0.2' }, pollMs: 20 },
      { shell, redis, prefix: PREFIX, log: silentLogger() },
    );

  it('live-migrates with seed 002 vHBA pairs: secondary off the source, onto the target, migrate, primary destroyed, pair swapped', async () => {
    const fake = new FakeVirsh();
    const progress: MigrateProgress[] = [];
    fake.migrate = async () => {
      // Returns once a domjobinfo poll has been read as progress, however slow the machine (a
      // guessed 120 ms missed every poll under load).
      await eventually(() => progress.some((p) => p.phase === 'migrating memory'), 'a domjobinfo poll read as progress');
      return ok('\n');
    };
    const res = await make(fake).migrateVm({ vm: 'web01', source: 'kvm01', target: 'kvm02', mode: 'live' }, (p) => progress.push(p));
    expect(res).toMatchObject({ vm: 'web01', host: 'kvm02' });
    expect(res.lingeringPorts).toBeUndefined();
    const m = fake.mutations();
    expect(m[0]).toBe('kvm01: nodedev-destroy --device scsi_host11');
    expect(m[1]).toBe('kvm02: nodedev-create /dev/stdin');
    expect(m[2]).toBe('kvm01: migrate --live --persistent --undefinesource --domain web01 --desturi qemu+ssh://10.0.0.2/system');
    expect(m[3]).toBe('kvm01: nodedev-destroy --device scsi_host9');
    expect(m[4]).toMatch(new RegExp(`^kvm02: metadata --domain web01 --uri https://ferry.dev/xmlns/1 --key ferry --set <vm ha="true"><vhba wwnn="${WWNN}" wwpn="${S}" secondary="${P}"`));
    const create = fake.calls.find((c) => c.argv[3] === 'nodedev-create')!;
    expect(create.stdin).toContain(`<parent>scsi_host5</parent>`);
    expect(create.stdin).toContain(`<wwnn>${WWNN}</wwnn><wwpn>${S}</wwpn>`);
    // Progress from the recorded domjobinfo: (4.016 - 2.851) / 4.016 = 29 %, 2.851 GiB = 2919 MiB remaining.
    expect(progress).toContainEqual({ percent: 29, phase: 'migrating memory', remainingMiB: 2919 });
    expect(progress.at(-1)).toEqual({ percent: 100, phase: 'done' });
    expect(fake.hosts['kvm02']!.domains.get('web01')).toBe('running');
    expect([...fake.hosts['kvm01']!.devices.keys()]).toEqual(['scsi_host5']);
  });

  it('rolls back on a failed migration: target vHBA destroyed, source secondary recreated, primary untouched', async () => {
    const fake = new FakeVirsh();
    fake.migrate = async () => fail('error: internal error: unable to execute QEMU command \'migrate\': Unable to write to socket: Connection reset by peer');
    const err = await make(fake)
      .migrateVm({ vm: 'web01', source: 'kvm01', target: 'kvm02', mode: 'live' })
      .then(() => null, (e: unknown) => e as AdapterError);
    expect(err).toBeInstanceOf(AdapterError);
    if (!err) return;
    expect(err).toMatchObject({ host: 'kvm01', op: 'migrate', code: 'exit' });
    expect(err.message).toContain('Connection reset by peer');
    const m = fake.mutations();
    expect(m.slice(3)).toEqual(['kvm02: nodedev-destroy --device scsi_host20', 'kvm01: nodedev-create /dev/stdin']);
    expect(fake.calls.filter((c) => c.host === 'kvm01' && c.argv[3] === 'nodedev-create')[0]!.stdin).toContain(`<wwpn>${S}</wwpn>`);
    expect([...fake.hosts['kvm02']!.devices.keys()]).toEqual(['scsi_host5']);
    expect(fake.hosts['kvm01']!.devices.has('scsi_host9')).toBe(true); // primary never touched
    expect(fake.hosts['kvm01']!.domains.get('web01')).toBe('running');
  });

  it('cancels through AbortSignal with domjobabort, then rolls back', async () => {
    const fake = new FakeVirsh();
    fake.migrate = async () => {
      // Runs until Ferry aborts it (domjobabort), as a real migration would.
      await eventually(() => fake.aborted, 'domjobabort');
      return fail('error: operation aborted: migration out job: canceled by client');
    };
    const ac = new AbortController();
    const err = await make(fake)
      .migrateVm({ vm: 'web01', source: 'kvm01', target: 'kvm02', mode: 'live' }, () => ac.abort(), { signal: ac.signal })
      .catch((e: unknown) => e as AdapterError);
    expect(err).toMatchObject({ code: 'cancelled', host: 'kvm01' });
    expect(fake.mutations()).toContain('kvm01: domjobabort --domain web01');
    expect([...fake.hosts['kvm02']!.devices.keys()]).toEqual(['scsi_host5']);
    expect(fake.hosts['kvm01']!.domains.has('web01')).toBe(true);
  });

  it('a VM the caller just read (req.seen) is not read again before the move; the landing is checked on both hosts at once', async () => {
    const fake = new FakeVirsh();
    const a = make(fake);
    const seen = (await a.findVm('web01'))!;
    fake.calls = [];
    await a.migrateVm({ vm: 'web01', source: 'kvm01', target: 'kvm02', mode: 'live', seen });
    const before = fake.calls.slice(0, fake.calls.findIndex((c) => c.argv[3] === 'migrate'));
    // Only the vHBA pair's own work (nodedev-*, the source's NPIV picture) precedes the migrate:
    // the VM's own facts (dominfo, domblkinfo: read only for a VM's facts) are not read again.
    expect(before.filter((c) => ['dominfo', 'domblkinfo'].includes(c.argv[3]!))).toEqual([]);
    expect(before.some((c) => c.argv[3] === 'nodedev-create')).toBe(true);
    // Right after the migrate (before the vHBA pair's clean-up), both hosts are asked together.
    const after = fake.calls.slice(fake.calls.findIndex((c) => c.argv[3] === 'migrate') + 1).filter((c) => c.argv[3] !== 'domjobinfo');
    expect(after.slice(0, 2).map((c) => `${c.host}: ${c.argv[3]}`).sort()).toEqual(['kvm01: list', 'kvm02: dominfo']);
  });

  it('a move the hosts contradict is not a success: still defined on the source, or not persistent on the target', async () => {
    const still = new FakeVirsh();
    const exec = still.exec.bind(still);
    // --undefinesource did not take: the source keeps a shut-off definition.
    still.exec = async (host, argv, opts) => {
      const res = await exec(host, argv, opts);
      if (argv[3] === 'migrate' && res.code === 0) still.hosts['kvm01']!.domains.set('web01', 'shut off');
      return res;
    };
    await expect(make(still).migrateVm({ vm: 'web01', source: 'kvm01', target: 'kvm02', mode: 'live' })).rejects.toMatchObject({ code: 'source-still-defined', host: 'kvm01' });

    const transient = new FakeVirsh();
    const exec2 = transient.exec.bind(transient);
    transient.exec = async (host, argv, opts) => {
      const res = await exec2(host, argv, opts);
      return host === 'kvm02' && argv[3] === 'dominfo' ? { ...res, stdout: res.stdout.replace('Persistent:     yes', 'Persistent:     no') } : res;
    };
    await expect(make(transient).migrateVm({ vm: 'web01', source: 'kvm01', target: 'kvm02', mode: 'live' })).rejects.toMatchObject({ code: 'landed-not-persistent', host: 'kvm02' });
  });

  it('removes a stale vport with nodedev-destroy, falling back to sysfs vport_delete when libvirt refuses', async () => {
    const fake = new FakeVirsh();
    fake.hosts['kvm01']!.domains.clear(); // no domain uses anything now
    fake.destroyFails.add('scsi_host11');
    const a = make(fake);
    const inv = await a.npivInventory('kvm01');
    expect(inv.hbas).toEqual([{ wwpn: '10000090FA1B2C3D', wwnn: '20000090FA1B2C3D', fabric: '100000C0DD00AA01', instance: 'scsi_host5', npivCapable: true, maxVports: 255 }]);
    expect(inv.endpointWwpns).toEqual([]);
    await a.removeVirtualPort(inv.virtualPorts.find((p) => p.wwpn === P)!);
    await a.removeVirtualPort(inv.virtualPorts.find((p) => p.wwpn === S)!);
    expect(fake.mutations()).toEqual([
      'kvm01: nodedev-destroy --device scsi_host9',
      'kvm01: nodedev-destroy --device scsi_host11',
      `kvm01: vport_delete ${S}:${WWNN} /sys/class/fc_host/host5/vport_delete`,
    ]);
    const sh = fake.calls.find((c) => c.argv[0] === 'sh')!;
    expect(sh.argv.slice(0, 3)).toEqual(['sh', '-c', 'printf "%s" "$1" > "$2"']); // values travel as arguments, never inside the script
  });

  it('reads CPU vendor/model from real capabilities and memory from nodeinfo', async () => {
    const facts = await make(new FakeVirsh()).describeHost('kvm01');
    expect(facts.cpu).toEqual({ vendor: 'intel', family: 'skylake-server-ibrs', model: 'Skylake-Server-IBRS', baseline: 'Skylake-Server-IBRS', cores: 64 });
    expect(facts.memoryMiB).toBe(772952);
    expect(facts.memoryUsedMiB).toBe(8192);
  });

  it('refuses storage migration plainly and a VM that is not on the stated source', async () => {
    const a = make(new FakeVirsh());
    await expect(a.migrateVm({ vm: 'web01', source: 'kvm01', target: 'kvm02', mode: 'live', datastore: 'san2' })).rejects.toBeInstanceOf(UnsupportedError);
    await expect(a.migrateVm({ vm: 'web01', source: 'kvm02', target: 'kvm01', mode: 'live' })).rejects.toMatchObject({ code: 'not-found', host: 'kvm02' });
  });

  it('turns malformed virsh output into an AdapterError naming host and operation', async () => {
    const fake = new FakeVirsh();
    const exec = fake.exec.bind(fake);
    fake.exec = async (host, argv, opts) => (argv[3] === 'dumpxml' ? ok('<domain><name>web01</name><uuid>x</uuid><memory unit="KiB">12') : exec(host, argv, opts));
    await expect(make(fake).listVms('kvm01')).rejects.toMatchObject({ host: 'kvm01', op: 'dumpxml', code: 'malformed' });
    const fake2 = new FakeVirsh();
    const exec2 = fake2.exec.bind(fake2);
    fake2.exec = async (host, argv, opts) => (argv[3] === 'nodeinfo' ? ok('garbage without colons\n') : exec2(host, argv, opts));
    const err = await make(fake2).describeHost('kvm01').then(() => null, (e: unknown) => e as AdapterError);
    if (!err) throw new Error('describeHost should have failed');
    expect(err).toMatchObject({ host: 'kvm01', op: 'nodeinfo', code: 'malformed' });
    expect(err.message).toContain('no "key: value" lines');
  });

  it('runs the patch hook as sh -c <command>, one argument, with the timeout; a non-zero exit is returned, a signal death throws', async () => {
    const fake = new FakeVirsh();
    const exec = fake.exec.bind(fake);
    const answers: ExecResult[] = [{ stdout: 'Upgraded 12 packages\n', stderr: 'W: reboot required\n', code: 2 }, { stdout: '', stderr: '', code: null }];
    fake.exec = async (host, argv, opts) => (argv[0] === 'sh' && argv.length === 3 ? (fake.calls.push({ host, argv: [...argv] }), answers.shift()!) : exec(host, argv, opts));
    const a = make(fake);
    expect(a.capabilities.hostCommands).toBe(true);
    const command = `apt-get -y upgrade && echo "done on $(hostname)" # it's kvm01`;
    const r = await a.runCommand('kvm01', command, { timeoutMs: 3_600_000 });
    expect(r).toMatchObject({ stdout: 'Upgraded 12 packages\n', stderr: 'W: reboot required\n', exitCode: 2 });
    expect(fake.calls.at(-1)).toEqual({ host: 'kvm01', argv: ['sh', '-c', command] });
    await expect(a.runCommand('kvm01', 'sleep 1')).rejects.toMatchObject({ host: 'kvm01', op: 'runCommand', code: 'killed' });
    await expect(a.runCommand('kvm09', 'true')).rejects.toMatchObject({ code: 'unknown-host' });
    // The timeout reaches the shell.
    const seen: (number | undefined)[] = [];
    fake.exec = async (_h, _argv, opts) => (seen.push(opts?.timeoutMs), ok());
    await a.runCommand('kvm02', 'true', { timeoutMs: 1234 });
    expect(seen).toEqual([1234]);
  });

  it('parses domjobinfo with no job', () => {
    expect(parseDomjobinfo(rec('domjobinfo-none.txt'))).toEqual({ type: 'None' });
  });
});
