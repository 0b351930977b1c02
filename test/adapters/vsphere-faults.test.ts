/**
 * Faults the simulator cannot produce, replayed with nock from replies shaped like a real
 * vCenter 8 (test/fixtures/vsphere): InvalidLogin, NotAuthenticated as a SOAP fault, a task
 * that ends in error, a cancelled task, a request that times out, paged PropertyCollector
 * results, and MigrateVM_Task on a server that has it.
 */
import nock from 'nock';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { VsphereAdapter, type VsphereSettings } from '../../src/adapters/vsphere/index.js';
import { AdapterError, type MigrateProgress } from '../../src/adapters/types.js';
import { checkFindings } from '../../src/adapters/vsphere/adapter.js';
import { parseXml, path as xpath } from '../../src/adapters/vsphere/xml.js';
import { COOKIE, fault, fixture, soap } from '../fixtures/vsphere/soap.js';
import { timeBound } from '../support/speed.js';

const VC = 'http://vcenter.test';

function taskInfo(state: string, extra = ''): string {
  return soap(
    `<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><objects><obj type="Task">task-7</obj><propSet><name>info</name>` +
      `<val xsi:type="TaskInfo"><key>task-7</key><task type="Task">task-7</task><state>${state}</state>${extra}</val></propSet></objects></returnval></RetrievePropertiesExResponse>`,
  );
}

const has = (s: string) => (body: unknown) => typeof body === 'string' && body.includes(s);

/** RetrieveServiceContent + Login + view + the paged snapshot. */
function loginAndSnapshot(times = 1): void {
  nock(VC).post('/sdk', has('<RetrieveServiceContent')).reply(200, soap(fixture('service-content.xml')));
  nock(VC).post('/sdk', has('<Login')).times(times).reply(200, soap('<LoginResponse xmlns="urn:vim25"><returnval><key>52a0</key><userName>svc-ferry</userName></returnval></LoginResponse>'), COOKIE);
  nock(VC)
    .post('/sdk', has('<CreateContainerView'))
    .times(times)
    .reply(200, soap('<CreateContainerViewResponse xmlns="urn:vim25"><returnval type="ContainerView">session[52a0]view-1</returnval></CreateContainerViewResponse>'));
}

function snapshotPages(times = 1): void {
  nock(VC).post('/sdk', has('<type>VirtualMachine</type>')).times(times).reply(200, soap(fixture('snapshot-page1.xml')));
  nock(VC).post('/sdk', has('<ContinueRetrievePropertiesEx')).times(times).reply(200, soap(fixture('snapshot-page2.xml')));
}

describe('vSphere adapter faults (nock)', () => {
  const adapters: VsphereAdapter[] = [];
  function make(over: Partial<VsphereSettings> = {}): VsphereAdapter {
    const a = new VsphereAdapter({
      cluster: 'prod',
      hosts: ['esxa', 'esxb'],
      settings: {
        url: `${VC}/sdk`,
        user: 'svc-ferry',
        password: 'secret',
        hostNames: { 'esx-a.example.com': 'esxa', 'esx-b.example.com': 'esxb' },
        taskPollMs: 10,
        requestTimeoutMs: 2000,
        keepAliveMs: 0,
        snapshotTtlMs: 0,
        ...over,
      },
    });
    adapters.push(a);
    return a;
  }

  beforeAll(() => {
    nock.disableNetConnect();
  });
  afterEach(async () => {
    // Logout replies, whatever state a test left.
    nock(VC).post('/sdk', has('<Logout')).optionally().times(5).reply(200, soap('<LogoutResponse xmlns="urn:vim25"></LogoutResponse>'));
    await Promise.allSettled(adapters.splice(0).map((a) => a.close()));
    const pending = nock.pendingMocks().filter((m) => !m.includes('Logout'));
    nock.cleanAll();
    expect(pending).toEqual([]);
  });
  afterAll(() => {
    nock.enableNetConnect();
  });

  it('InvalidLogin becomes a per-host AdapterError naming the vCenter; the password is XML-escaped, not spliced', async () => {
    let loginBody = '';
    nock(VC).post('/sdk', has('<RetrieveServiceContent')).reply(200, soap(fixture('service-content.xml')));
    nock(VC)
      .post('/sdk', (b: unknown) => {
        if (typeof b === 'string' && b.includes('<Login')) {
          loginBody = b;
          return true;
        }
        return false;
      })
      .reply(500, fault('InvalidLogin', 'Cannot complete login due to an incorrect user name or password.'));
    const err = await make({ password: `p<&>"'</password><x>` }).describeHost('esxa').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterError);
    expect(err).toMatchObject({ code: 'auth', kind: 'auth', fault: 'InvalidLogin', host: 'esxa', op: 'describeHost', retryable: false });
    expect((err as Error).message).toBe(
      'describeHost on esxa: vCenter vcenter.test refused the login for svc-ferry: Cannot complete login due to an incorrect user name or password.',
    );
    expect(loginBody).not.toContain('</password><x>');
    expect(xpath(parseXml(loginBody), 'Envelope.Body.Login.password')).toBe(`p<&>"'</password><x>`);
  });

  it('a login failure shared by concurrent reads blames each read\'s own host', async () => {
    nock(VC).post('/sdk', has('<RetrieveServiceContent')).reply(200, soap(fixture('service-content.xml')));
    nock(VC).post('/sdk', has('<Login')).reply(500, fault('InvalidLogin', 'Cannot complete login due to an incorrect user name or password.'));
    // One inventory read for both (snapshots are shared within their time to live).
    const a = make({ snapshotTtlMs: 60_000 });
    const [ea, eb] = await Promise.all([a.describeHost('esxa').catch((e: unknown) => e), a.listVms('esxb').catch((e: unknown) => e)]);
    expect(ea).toMatchObject({ host: 'esxa', op: 'describeHost' });
    expect(eb).toMatchObject({ host: 'esxb', op: 'listVms' });
    expect((eb as Error).message).toMatch(/^listVms on esxb: vCenter vcenter\.test refused the login/);
  });

  it('reads a paged inventory (ContinueRetrievePropertiesEx) with mapped host names, EVC and HA', async () => {
    loginAndSnapshot();
    snapshotPages();
    const a = make();
    const h = await a.describeHost('esxa');
    expect(h).toMatchObject({ name: 'esxa', maintenance: false, migrationNetwork: true, memoryMiB: 262144, memoryUsedMiB: 8192 });
    expect(h.cpu).toMatchObject({ vendor: 'intel', baseline: 'intel-skylake', cores: 40, family: 'Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz' });
    expect(h.datastores).toEqual([{ name: 'san01', shared: true, capacityGiB: 2048, freeGiB: 1024 }]);
  });

  it('re-logs in once when vCenter answers NotAuthenticated as a fault', async () => {
    loginAndSnapshot(2);
    nock(VC).post('/sdk', has('<type>VirtualMachine</type>')).reply(500, fault('NotAuthenticated', 'The session is not authenticated.'));
    snapshotPages();
    const vm = await make().findVm('app01');
    expect(vm).toMatchObject({ name: 'app01', host: 'esxa', power: 'running', ha: true, memoryMiB: 8192, cpus: 4, id: '5003a1b2-0000-4000-8000-00000000a001' });
  });

  it('uses MigrateVM_Task where the server has it; a task that ends in error throws its localizedMessage', async () => {
    loginAndSnapshot();
    snapshotPages();
    let migrateBody = '';
    nock(VC)
      .post('/sdk', (b: unknown) => {
        if (typeof b === 'string' && b.includes('<MigrateVM_Task')) {
          migrateBody = b;
          return true;
        }
        return false;
      })
      .reply(200, soap('<MigrateVM_TaskResponse xmlns="urn:vim25"><returnval type="Task">task-7</returnval></MigrateVM_TaskResponse>'));
    nock(VC).post('/sdk', has('<type>Task</type>')).reply(200, taskInfo('running', '<progress>30</progress>'));
    nock(VC)
      .post('/sdk', has('<type>Task</type>'))
      .reply(
        200,
        taskInfo(
          'error',
          '<error><fault xsi:type="InvalidState"></fault><localizedMessage>The operation is not allowed in the current state of the host.</localizedMessage></error>',
        ),
      );
    const progress: MigrateProgress[] = [];
    const err = await make()
      .migrateVm({ vm: 'app01', source: 'esxa', target: 'esxb', mode: 'live' }, (p) => progress.push(p))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterError);
    expect(err).toMatchObject({ code: 'wrong-state', kind: 'conflict', fault: 'InvalidState', host: 'esxa', op: 'migrateVm' });
    expect((err as Error).message).toBe('migrateVm on esxa failed in vCenter: The operation is not allowed in the current state of the host.');
    expect(progress).toEqual([{ percent: 30, phase: 'running' }]);
    const body = parseXml(migrateBody);
    expect(xpath(body, 'Envelope.Body.MigrateVM_Task._this')).toEqual({ '#text': 'vm-10', '@_type': 'VirtualMachine' });
    expect(xpath(body, 'Envelope.Body.MigrateVM_Task.host')).toEqual({ '#text': 'host-2', '@_type': 'HostSystem' });
    // Same cluster: no pool.
    expect(xpath(body, 'Envelope.Body.MigrateVM_Task.pool')).toBeUndefined();
  });

  it('an abort cancels the vCenter task (CancelTask) and reports the cancellation', async () => {
    loginAndSnapshot();
    snapshotPages();
    nock(VC).post('/sdk', has('<MigrateVM_Task')).reply(200, soap('<MigrateVM_TaskResponse xmlns="urn:vim25"><returnval type="Task">task-7</returnval></MigrateVM_TaskResponse>'));
    nock(VC).post('/sdk', has('<type>Task</type>')).reply(200, taskInfo('running', '<progress>10</progress>'));
    const cancel = nock(VC).post('/sdk', has('<CancelTask')).reply(200, soap('<CancelTaskResponse xmlns="urn:vim25"></CancelTaskResponse>'));
    nock(VC)
      .post('/sdk', has('<type>Task</type>'))
      .reply(200, taskInfo('error', '<error><fault xsi:type="RequestCanceled"></fault><localizedMessage>The task was canceled by a user.</localizedMessage></error>'));
    const ac = new AbortController();
    const err = await make()
      .migrateVm({ vm: 'app01', source: 'esxa', target: 'esxb', mode: 'live' }, () => ac.abort(), { signal: ac.signal })
      .catch((e: unknown) => e);
    expect(cancel.isDone()).toBe(true);
    expect(err).toMatchObject({ code: 'cancelled', op: 'migrateVm' });
  });

  it('a request that does not answer in time is a retryable timeout naming host and op', async () => {
    nock(VC).post('/sdk', has('<RetrieveServiceContent')).delay(60_000).reply(200, soap(fixture('service-content.xml')));
    const started = Date.now();
    const err = await make({ requestTimeoutMs: 200 }).listVms('esxb').catch((e: unknown) => e);
    // Cut at 200 ms, not at the reply 60 s later (the bound leaves room for a slow machine).
    const limit = timeBound(1200);
    expect(Date.now() - started, limit.why).toBeLessThan(limit.ms);
    expect(err).toBeInstanceOf(AdapterError);
    expect(err).toMatchObject({ code: 'timeout', host: 'esxb', op: 'listVms', retryable: true });
    expect((err as Error).message).toBe('listVms on esxb: vCenter vcenter.test: no reply within 200 ms');
  });

  it('maps CheckMigrate results to findings', () => {
    const result = parseXml(
      soap(
        '<x><val xsi:type="ArrayOfCheckResult"><CheckResult><vm type="VirtualMachine">vm-10</vm>' +
          '<error><fault xsi:type="CpuIncompatible"></fault><localizedMessage>The CPU of the host is incompatible.</localizedMessage></error>' +
          '<warning><fault xsi:type="DisallowedMigrationDeviceAttached"></fault><localizedMessage>CD-ROM connected.</localizedMessage></warning>' +
          '</CheckResult></val></x>',
      ),
    );
    expect(checkFindings(xpath(result, 'Envelope.Body.x.val'))).toEqual([
      { code: 'cpu', severity: 'block', message: 'The CPU of the host is incompatible.' },
      { code: 'device', severity: 'warn', message: 'CD-ROM connected.' },
    ]);
  });
});
