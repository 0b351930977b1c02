/**
 * A RemoteShell in front of the real SSH shell, for the few virsh subcommands libvirt's test
 * driver cannot perform: `migrate`, `domjobinfo`, `domjobabort`, and stateful `nodedev-create`,
 * `nodedev-destroy`, `metadata --set` (the test driver re-reads its XML file on every call, so
 * a mutation made by one virsh call is gone at the next). These are answered here with outputs
 * in the form real virsh 9 prints (test/fixtures/libvirt/recorded/), and their EFFECT is written
 * into the per-host driver files (test/fixtures/libvirt/fleet.ts), so every following read —
 * list, dominfo, dumpxml, domstate, nodedev-dumpxml — is the real virsh over the real sshd
 * seeing the moved domain / the new vHBA.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecOptions, ExecResult, RemoteShell } from '../../src/adapters/ssh/types.js';

const REC = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/libvirt/recorded');
const rec = (f: string): string => fs.readFileSync(path.join(REC, f), 'utf8');
const FERRY_NS = 'https://ferry.dev/xmlns/1';

const ok = (stdout = ''): ExecResult => ({ stdout, stderr: '', code: 0 });
const fail = (stderr: string, code = 1): ExecResult => ({ stdout: '', stderr, code });

export interface MigrationShellOptions {
  /** migrate URI host part (the target's address) -> Ferry host name. */
  hostByAddress: Record<string, string>;
  /** Ferry host name -> its test-driver XML file. */
  fileOf: (host: string) => string;
  /** How long one `virsh migrate` takes. */
  migrationMs?: number;
}

export class MigrationStandInShell implements RemoteShell {
  /** Every intercepted call, "<host>: <subcommand> <args…>". */
  readonly calls: string[] = [];
  /** Domains whose next migrations fail the way a real one does (job error, exit 1). */
  readonly failMigrate = new Set<string>();
  private readonly jobs = new Map<string, AbortController>();
  private nextHostNo = 40;

  constructor(
    private readonly inner: RemoteShell,
    private readonly opts: MigrationShellOptions,
  ) {}

  async exec(host: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    // The precheck's migration-path test (`virsh -c <migrateUri> capabilities` on the source): the
    // test driver has no qemu+ssh, so the same virsh call goes to the target's own driver file.
    if (argv[1] === '-c' && argv[2]?.startsWith('qemu+ssh://') && argv[3] === 'capabilities') {
      const addr = /^qemu\+ssh:\/\/(?:[^@/]+@)?([^:/]+)/.exec(argv[2])?.[1] ?? '';
      const target = this.opts.hostByAddress[addr];
      this.calls.push(`${host}: path ${argv[2]}`);
      if (!target) return fail(`error: failed to connect to the hypervisor\nerror: Cannot recv data: ssh: connect to host ${addr} port 22: Connection refused\n`);
      return this.inner.exec(host, [argv[0]!, '-c', `test://${this.opts.fileOf(target)}`, ...argv.slice(3)], opts);
    }
    const sub = argv[1] === '-c' ? argv[3] : undefined;
    if (!sub || !['migrate', 'domjobinfo', 'domjobabort', 'nodedev-create', 'nodedev-destroy', 'metadata'].includes(sub)) return this.inner.exec(host, argv, opts);
    const args = argv.slice(4);
    this.calls.push(`${host}: ${sub} ${args.join(' ')}`);
    const opt = (name: string): string | undefined => {
      const i = args.indexOf(name);
      return i >= 0 ? args[i + 1] : undefined;
    };
    const file = this.opts.fileOf(host);
    switch (sub) {
      case 'domjobinfo':
        return ok(this.jobs.has(opt('--domain')!) ? rec('domjobinfo-migrating.txt') : rec('domjobinfo-none.txt'));
      case 'domjobabort': {
        const job = this.jobs.get(opt('--domain')!);
        if (!job) return fail(`error: Requested operation is not valid: no job is active on the domain\n`);
        job.abort();
        return ok();
      }
      case 'migrate':
        return this.migrate(host, opt('--domain')!, opt('--desturi')!, opts.signal);
      case 'nodedev-create':
        return this.nodedevCreate(file, opts.stdin ?? '');
      case 'nodedev-destroy': {
        const name = opt('--device')!;
        const removed = editLines(file, (lines) => lines.filter((l) => !(l.startsWith('<device>') && l.includes(`<name>${name}</name>`))));
        return removed ? ok(`Destroyed node device '${name}'\n\n`) : fail(`error: Could not find matching device '${name}'\nerror: Node device not found: no node device with matching name '${name}'\n`);
      }
      case 'metadata': {
        const dom = opt('--domain')!;
        const xml = opt('--set')!;
        const namespaced = xml.replace(/^<vm/, `<ferry:vm xmlns:ferry="${FERRY_NS}"`).replace(/<vhba/g, '<ferry:vhba').replace(/<\/vm>$/, '</ferry:vm>');
        const found = editLines(file, (lines) =>
          lines.map((l) => {
            if (!isDomain(l, dom)) return l;
            return l.includes('<metadata>') ? l.replace(/<metadata>.*<\/metadata>/, `<metadata>${namespaced}</metadata>`) : l.replace('</uuid>', `</uuid><metadata>${namespaced}</metadata>`);
          }),
        );
        return found ? ok('Metadata modified\n') : fail(`error: failed to get domain '${dom}'\n`);
      }
    }
    return fail(`stand-in: unhandled ${sub}\n`);
  }

  private async migrate(source: string, dom: string, desturi: string, signal?: AbortSignal): Promise<ExecResult> {
    const address = /^[a-z+]+:\/\/([^/]+)\//.exec(desturi)?.[1] ?? '';
    const target = this.opts.hostByAddress[address];
    if (!target) return fail(`error: failed to connect to the hypervisor\nerror: unable to connect to server at '${address}:22': Connection refused\n`);
    const job = new AbortController();
    this.jobs.set(dom, job);
    const aborted = new Promise<'aborted'>((resolve) => {
      job.signal.addEventListener('abort', () => resolve('aborted'), { once: true });
      signal?.addEventListener('abort', () => resolve('aborted'), { once: true });
    });
    try {
      const ms = this.opts.migrationMs ?? 1200;
      const how = await Promise.race([new Promise<'done'>((r) => setTimeout(() => r('done'), this.failMigrate.has(dom) ? ms / 3 : ms)), aborted]);
      if (how === 'aborted') return fail('error: operation aborted: migration out: canceled by client\n');
      if (this.failMigrate.has(dom)) return fail('error: operation failed: migration out job: unexpectedly failed\n');
      // The domain leaves the source's driver file and appears in the target's (--persistent --undefinesource).
      let line: string | undefined;
      editLines(this.opts.fileOf(source), (lines) => lines.filter((l) => (isDomain(l, dom) ? ((line = l), false) : true)));
      if (!line) return fail(`error: failed to get domain '${dom}'\n`);
      // --persistent: the domain is defined on the target even if it was transient on the source.
      const arrived = line.replace('<test:transient/>', '');
      editLines(this.opts.fileOf(target), (lines) => {
        const at = lines.findIndex((l) => l.startsWith('<network>'));
        lines.splice(at < 0 ? lines.length - 2 : at, 0, arrived);
        return lines;
      });
      return ok('\n');
    } finally {
      this.jobs.delete(dom);
    }
  }

  private nodedevCreate(file: string, xml: string): ExecResult {
    const parent = /<parent>([^<]+)<\/parent>/.exec(xml)?.[1];
    const wwnn = /<wwnn>([^<]+)<\/wwnn>/.exec(xml)?.[1];
    const wwpn = /<wwpn>([^<]+)<\/wwpn>/.exec(xml)?.[1];
    if (!parent || !wwnn || !wwpn) return fail('error: Failed to create node device from /dev/stdin\nerror: XML error: missing parent, wwnn or wwpn\n');
    const content = fs.readFileSync(file, 'utf8');
    const parentLine = content.split('\n').find((l) => l.startsWith('<device>') && l.includes(`<name>${parent}</name>`));
    if (!parentLine) return fail(`error: Failed to create node device from /dev/stdin\nerror: Node device not found: no node device with matching name '${parent}'\n`);
    if (content.includes(`<wwpn>${wwpn}</wwpn>`)) return fail(`error: Failed to create node device from /dev/stdin\nerror: internal error: vport ${wwpn} already exists\n`);
    const fabric = /<fabric_wwn>([^<]+)<\/fabric_wwn>/.exec(parentLine)?.[1] ?? '0000000000000000';
    const n = this.nextHostNo++;
    const name = `scsi_host${n}`;
    const dev = `<device><name>${name}</name><parent>${parent}</parent><capability type='scsi_host'><host>${n}</host><unique_id>${n}</unique_id><capability type='fc_host'><wwnn>${wwnn}</wwnn><wwpn>${wwpn}</wwpn><fabric_wwn>${fabric}</fabric_wwn></capability></capability></device>`;
    editLines(file, (lines) => {
      lines.splice(lines.lastIndexOf('</node>'), 0, dev);
      return lines;
    });
    return ok(`Node device ${name} created from /dev/stdin\n\n`);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function isDomain(line: string, dom: string): boolean {
  return line.startsWith('<domain') && line.includes(`<name>${dom}</name>`);
}

/** Read-modify-write a driver file atomically (real virsh may read it at any moment); true if it changed. */
export function editLines(file: string, fn: (lines: string[]) => string[]): boolean {
  const before = fs.readFileSync(file, 'utf8');
  const after = fn(before.split('\n')).join('\n');
  if (after === before) return false;
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, after);
  fs.renameSync(tmp, file);
  return true;
}

/** The domains a host's driver file holds, by name. */
export function domainsIn(file: string): string[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('<domain'))
    .map((l) => /<name>([^<]+)<\/name>/.exec(l)![1]!);
}
