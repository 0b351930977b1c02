/**
 * `cancel <job>` and the card's Cancel button during a Hyper-V live migration, through the real
 * workflow: handleLine, BullMQ workers and the operation's cancel flag on a private Redis, the
 * Hyper-V adapter building its real PowerShell. The hosts are the recording shell answering each
 * script by its marker with fixtures shaped like the real classes (test/fixtures/hyperv): there
 * is no Windows here. That the same scripts cross a real sshd byte for byte, the cancel in a
 * session of its own while Move-VM's still runs, is test/adapters/hyperv-sshd.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, RecordingShell } from '../fixtures/hyperv/fake-shell.js';
import { HypervAdapter } from '../../src/adapters/hyperv/index.js';
import { cancelMigrationScript } from '../../src/adapters/hyperv/scripts.js';
import { handleClick } from '../../src/bot/actions.js';
import { makeHarness, uniquePrefix, type Harness } from '../support/harness.js';

const WEB01_ID = '4f2c1f0e-1d8b-4e5c-9a0b-7c1d2e3f4a5b';
/** web01 of the recorded Get-VM output, without what pins it (an internal-switch NIC, vHBAs the target cannot serve): a VM that can move live. */
const WEB01 = (() => {
  const all = JSON.parse(fixture('vm-facts.json')) as { ok: true; data: { Name: string; NetworkAdapters: { SwitchName: string }[]; FibreChannelHbas: unknown[] }[] };
  const vm = all.data.find((v) => v.Name === 'web01')!;
  return JSON.stringify({ ok: true, data: [{ ...vm, NetworkAdapters: vm.NetworkAdapters.filter((n) => n.SwitchName !== 'LabInternal'), FibreChannelHbas: [] }] });
})();
const CANCELLED = JSON.stringify({ ok: false, error: { code: 'powershell', message: 'The operation was cancelled by the user.' } });

describe('cancel a running Hyper-V live migration through the workflow', () => {
  let h: Harness;
  let shell: RecordingShell;
  /** Cancel requests the hosts received; each ends the Move-VM in flight, as VMMS does. */
  let cancels = 0;
  let movesRunning = 0;
  /** Set when the suite ends: a move nobody cancelled (the bug this guards against) lets go then. */
  let closing = false;

  beforeAll(async () => {
    shell = new RecordingShell({
      // web01 lives on hyp01; hyp02 has no VMs.
      'vm-facts': (c) => (c.host === 'hyp01' ? { stdout: WEB01 } : { fixture: 'vm-facts-empty.json' }),
      'host-facts': { fixture: 'host-facts.json' },
      'npiv-inventory': { fixture: 'npiv-inventory.json' },
      'migration-progress': { fixture: 'migration-progress.json' },
      'migrate-vm': async () => {
        const seen = cancels;
        movesRunning++;
        try {
          // Move-VM runs until its Msvm_MigrationJob is terminated: an event, not a duration.
          while (cancels === seen && !closing) await new Promise((r) => setTimeout(r, 20));
        } finally {
          movesRunning--;
        }
        return { stdout: CANCELLED, code: 1 };
      },
      'cancel-migration': () => {
        cancels++;
        return { fixture: 'cancel-migration.json' };
      },
    });
    const yaml = `
timezone: UTC
limits: { migrationRetries: 0 }
clusters:
  hv:
    adapter: hyperv
    hosts: [hyp01, hyp02]
    # Required by the configuration; the recording shell stands in for SSH here.
    ssh: { user: ferry, privateKeyPath: /dev/null, knownHosts: /dev/null }
groups:
  operators: [alice]
console: { user: alice }
`;
    h = await makeHarness({
      yaml,
      prefix: uniquePrefix('wf-hv-cancel'),
      adapters: { hyperv: (ctx) => new HypervAdapter(shell, { cluster: ctx.cluster, hosts: ctx.hosts, failoverCluster: true, progressIntervalMs: 100, lingerCheckDelayMs: 10 }) },
    });
  });

  afterAll(async () => {
    closing = true;
    await h?.close();
  });

  const lines = (): string => h.events.map((e) => e.message.text).join('\n');

  for (const how of ['typed', 'button'] as const) {
    it(`${how} cancel: the Msvm_MigrationJob is terminated on the source, the card and thread say cancelled, web01 stays on hyp01`, async () => {
      const before = shell.byMarker('cancel-migration').length;
      const op = await h.planned("migrate web01 to hyp02", { timeoutMs: 30_000 }).catch((e: unknown) => { throw new Error(`${String(e)}\n${h.transcript()}`); });
      await h.run(`start ${op.id}`);
      // In flight: Move-VM running and the card showing the job's progress.
      await h.waitFor(async () => movesRunning > 0 && /migrate web01 to hyp02: moving [1-9]/.test(lines()), 'the move to be in flight', 30_000);
      if (how === 'typed') await h.run(`cancel ${op.id}`);
      else {
        const conv = { surface: 'console' as const, session: h.session, user: 'alice' };
        await handleClick(h.deps, 'ferry:drain-cancel', { channel: 'console', user: 'alice', conv, value: String(op.id), groupMembers: {}, refuse: async (r) => void (await h.deps.outbox.ephemeral(conv, { text: r.sentence, blocks: [] })) });
      }
      const done = await h.waitForOp(op.id, 30_000);
      expect(done.status, h.transcript()).toBe('cancelled');
      const sent = shell.byMarker('cancel-migration').slice(before);
      expect(sent.map((c) => c.host)).toEqual(['hyp01']);
      // The exact PowerShell: RequestStateChange(Terminate) on web01's running migration jobs.
      expect(sent[0]!.script).toBe(cancelMigrationScript(WEB01_ID));
      await h.waitForText(`job ${op.id} was cancelled by @alice: the migration of web01 to hyp02 was stopped and web01 stays on hyp01.`);
      await h.waitFor(async () => lines().includes('migrate web01 to hyp02: cancelled'), 'the card to say cancelled', 30_000);
      expect(movesRunning).toBe(0);
      expect((await h.deps.rt.adapters.forCluster('hv').findVm('web01'))?.host).toBe('hyp01');
    });
  }
});
