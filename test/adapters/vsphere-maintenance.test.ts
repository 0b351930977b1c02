/**
 * Maintenance on a vCenter that behaves like a real one, which govmomi's simulator does not:
 * EnterMaintenanceMode_Task stays 'running' while a powered-on VM is on the host and succeeds
 * once it has left; CancelTask ends a running task in RequestCanceled. Scripted with nock as a
 * small stateful vCenter (the replies are shaped like test/fixtures/vsphere), with the adapter's
 * record of unfinished tasks in the test Redis, shared by two adapter instances as by two
 * Ferry processes.
 */
import nock from 'nock';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { VsphereAdapter, type VsphereSettings } from '../../src/adapters/vsphere/index.js';
import { AdapterError } from '../../src/adapters/types.js';
import { parseXml, path as xpath } from '../../src/adapters/vsphere/xml.js';
import { COOKIE, fault, fixture, soap } from '../fixtures/vsphere/soap.js';
import { timeBound } from '../support/speed.js';

const VC = 'http://vcenter-maint.test';
const PREFIX = `ferry-test-vsmaint-${process.pid}`;
const KEY = `${PREFIX}:vsphere:enter-maintenance:prod:esxa`;


interface Task {
  id: string;
  kind: 'enter' | 'exit';
  cancelled?: boolean;
  /** localizedMessage of a task that vCenter ends in error. */
  failWith?: string;
}

/** vCenter's state: host-1 is esxa, host-2 esxb; app01 (vm-10, powered on) starts on esxa. */
interface Vc {
  inMaintenance: boolean;
  vmHost: 'host-1' | 'host-2';
  drs?: string;
  tasks: Map<string, Task>;
  calls: string[];
  bodies: Map<string, string>;
}

function snapshotXml(vc: Vc): string {
  const page2 = fixture('snapshot-page2.xml');
  const objects = page2.slice(page2.indexOf('<objects>'), page2.lastIndexOf('</returnval>'));
  let page = fixture('snapshot-page1.xml')
    .replace('<token>page-2</token>', '')
    .replace('</returnval></RetrievePropertiesExResponse>', `${objects}</returnval></RetrievePropertiesExResponse>`)
    // host-1 is the first host in the page.
    .replace('<name>runtime.inMaintenanceMode</name><val xsi:type="xsd:boolean">false</val>', `<name>runtime.inMaintenanceMode</name><val xsi:type="xsd:boolean">${vc.inMaintenance}</val>`)
    .replace(/(<name>runtime\.host<\/name><val type="HostSystem" xsi:type="ManagedObjectReference">)host-1/, `$1${vc.vmHost}`);
  if (vc.drs) {
    page = page.replace(
      '<propSet><name>name</name><val xsi:type="xsd:string">Prod</val></propSet>',
      '<propSet><name>name</name><val xsi:type="xsd:string">Prod</val></propSet>' +
        `<propSet><name>configuration.drsConfig</name><val xsi:type="ClusterDrsConfigInfo"><enabled>true</enabled><defaultVmBehavior>${vc.drs}</defaultVmBehavior><vmotionRate>3</vmotionRate></val></propSet>`,
    );
  }
  return soap(page);
}

/** A task's state follows the host: an enter task runs until no powered-on VM is on host-1. */
function taskState(vc: Vc, t: Task): { state: string; error?: [string, string] } {
  if (t.cancelled) return { state: 'error', error: ['RequestCanceled', 'The task was canceled by a user.'] };
  if (t.failWith) return { state: 'error', error: ['SystemError', t.failWith] };
  if (t.kind === 'exit') return { state: 'success' };
  if (vc.vmHost === 'host-1') return { state: 'running' };
  vc.inMaintenance = true;
  return { state: 'success' };
}

function taskInfoXml(vc: Vc, t: Task): string {
  const { state, error } = taskState(vc, t);
  const err = error ? `<error><fault xsi:type="${error[0]}"></fault><localizedMessage>${error[1]}</localizedMessage></error>` : '';
  return soap(
    `<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><objects><obj type="Task">${t.id}</obj><propSet><name>info</name>` +
      `<val xsi:type="TaskInfo"><key>${t.id}</key><task type="Task">${t.id}</task><state>${state}</state>${err}</val></propSet></objects></returnval></RetrievePropertiesExResponse>`,
  );
}

function fakeVcenter(over: Partial<Vc> = {}): Vc {
  const vc: Vc = { inMaintenance: false, vmHost: 'host-1', tasks: new Map(), calls: [], bodies: new Map(), ...over };
  let n = 0;
  const newTask = (kind: Task['kind']): string => {
    const id = `task-${++n}`;
    vc.tasks.set(id, { id, kind });
    return id;
  };
  nock(VC)
    .persist()
    .post('/sdk')
    .reply((_uri, body) => {
      const b = typeof body === 'string' ? body : JSON.stringify(body);
      const method = /<soapenv:Body><(\w+)/.exec(b)?.[1] ?? '?';
      vc.calls.push(method);
      vc.bodies.set(method, b);
      switch (method) {
        case 'RetrieveServiceContent':
          return [200, soap(fixture('service-content.xml'))];
        case 'Login':
          return [200, soap('<LoginResponse xmlns="urn:vim25"><returnval><key>52a0</key><userName>svc-ferry</userName></returnval></LoginResponse>'), COOKIE];
        case 'Logout':
          return [200, soap('<LogoutResponse xmlns="urn:vim25"></LogoutResponse>')];
        case 'CreateContainerView':
          return [200, soap('<CreateContainerViewResponse xmlns="urn:vim25"><returnval type="ContainerView">session[52a0]view-1</returnval></CreateContainerViewResponse>')];
        case 'RetrievePropertiesEx': {
          const task = /<obj type="Task">(task-\d+)<\/obj>/.exec(b)?.[1];
          if (task) {
            const t = vc.tasks.get(task);
            return t ? [200, taskInfoXml(vc, t)] : [500, fault('ManagedObjectNotFound', `The object '${task}' has already been deleted or has not been completely created`)];
          }
          return [200, snapshotXml(vc)];
        }
        case 'EnterMaintenanceMode_Task':
          return [200, soap(`<EnterMaintenanceMode_TaskResponse xmlns="urn:vim25"><returnval type="Task">${newTask('enter')}</returnval></EnterMaintenanceMode_TaskResponse>`)];
        case 'ExitMaintenanceMode_Task':
          vc.inMaintenance = false;
          return [200, soap(`<ExitMaintenanceMode_TaskResponse xmlns="urn:vim25"><returnval type="Task">${newTask('exit')}</returnval></ExitMaintenanceMode_TaskResponse>`)];
        case 'CancelTask': {
          const t = vc.tasks.get(/>(task-\d+)</.exec(b)?.[1] ?? '');
          if (!t || taskState(vc, t).state !== 'running') return [500, fault('InvalidState', 'The operation is not allowed in the current state.')];
          t.cancelled = true;
          return [200, soap('<CancelTaskResponse xmlns="urn:vim25"></CancelTaskResponse>')];
        }
        default:
          return [500, fault('MethodNotFound', `no ${method} in this script`)];
      }
    });
  return vc;
}

const count = (vc: Vc, method: string): number => vc.calls.filter((c) => c === method).length;

describe('vSphere maintenance on a vCenter that completes EnterMaintenanceMode_Task only when the host is empty (nock)', () => {
  let redis: Redis;
  const adapters: VsphereAdapter[] = [];
  function make(over: Partial<VsphereSettings> = {}): VsphereAdapter {
    const a = new VsphereAdapter({
      cluster: 'prod',
      hosts: ['esxa', 'esxb'],
      redis,
      prefix: PREFIX,
      settings: {
        url: `${VC}/sdk`,
        user: 'svc-ferry',
        password: 'secret',
        hostNames: { 'esx-a.example.com': 'esxa', 'esx-b.example.com': 'esxb' },
        taskPollMs: 10,
        requestTimeoutMs: 2000,
        keepAliveMs: 0,
        snapshotTtlMs: 0,
        maintenanceWatchMs: 0,
        ...over,
      },
    });
    adapters.push(a);
    return a;
  }
  const record = async (): Promise<Record<string, unknown> | null> => {
    const raw = await redis.get(KEY);
    return raw ? (JSON.parse(raw) as Record<string, unknown>) : null;
  };

  beforeAll(() => {
    redis = new Redis(inject('redisUrl'));
    nock.disableNetConnect();
  });
  afterEach(async () => {
    await Promise.allSettled(adapters.splice(0).map((a) => a.close()));
    nock.cleanAll();
    await redis.del(KEY);
  });
  afterAll(() => {
    nock.enableNetConnect();
    redis.disconnect();
  });

  it('enterMaintenance returns while the task runs; a second process sees the host entering and starts nothing; the task completes once the VM left', async () => {
    const vc = fakeVcenter();
    const a = make();
    const b = make();

    const started = Date.now();
    await a.enterMaintenance('esxa');
    const limit = timeBound(1500);
    expect(Date.now() - started, limit.why).toBeLessThan(limit.ms);
    expect(count(vc, 'EnterMaintenanceMode_Task')).toBe(1);
    const body = parseXml(vc.bodies.get('EnterMaintenanceMode_Task')!);
    expect(xpath(body, 'Envelope.Body.EnterMaintenanceMode_Task.evacuatePoweredOffVms')).toBe('false');
    expect(xpath(body, 'Envelope.Body.EnterMaintenanceMode_Task._this')).toEqual({ '#text': 'host-1', '@_type': 'HostSystem' });
    expect(taskState(vc, vc.tasks.get('task-1')!).state).toBe('running');
    expect(await record()).toMatchObject({ task: 'task-1', state: 'running' });

    // Another process: the host is in maintenance (no new placements), entering; nothing new.
    const seen = await b.describeHost('esxa');
    expect(seen).toMatchObject({ maintenance: true, enteringMaintenance: true });
    expect(seen.notes).toEqual([expect.stringContaining('esxa is entering maintenance: it takes no new VMs')]);
    await b.enterMaintenance('esxa');
    await a.enterMaintenance('esxa');
    expect(count(vc, 'EnterMaintenanceMode_Task')).toBe(1);

    // Ferry moves the VM; vCenter completes the task by itself.
    vc.vmHost = 'host-2';
    const done = await b.describeHost('esxa');
    expect(done.maintenance).toBe(true);
    expect(done.enteringMaintenance).toBeUndefined();
    expect(done.notes).toBeUndefined();
    expect(await record()).toBeNull();
    expect((await a.describeHost('esxa')).maintenance).toBe(true);
    await a.enterMaintenance('esxa');
    expect(count(vc, 'EnterMaintenanceMode_Task')).toBe(1);
  });

  it('with no powered-on VM on the host, enterMaintenance waits for the task and keeps no record', async () => {
    const vc = fakeVcenter({ vmHost: 'host-2' });
    await make().enterMaintenance('esxa');
    expect(vc.inMaintenance).toBe(true);
    expect(await record()).toBeNull();
  });

  it('exitMaintenance cancels the running enter task (CancelTask), from any process, idempotently', async () => {
    const vc = fakeVcenter();
    const a = make();
    const b = make();
    await a.enterMaintenance('esxa');
    await b.exitMaintenance('esxa');
    expect(count(vc, 'CancelTask')).toBe(1);
    expect(vc.tasks.get('task-1')?.cancelled).toBe(true);
    // Cancelled before the host was empty: it never was in maintenance, nothing to exit.
    expect(count(vc, 'ExitMaintenanceMode_Task')).toBe(0);
    expect(await record()).toBeNull();
    const facts = await a.describeHost('esxa');
    expect(facts).toMatchObject({ maintenance: false });
    expect(facts.notes).toBeUndefined();

    await a.exitMaintenance('esxa');
    await b.exitMaintenance('esxa');
    expect(count(vc, 'CancelTask')).toBe(1);
    expect(count(vc, 'ExitMaintenanceMode_Task')).toBe(0);
  });

  it('exitMaintenance after the enter task completed leaves maintenance with ExitMaintenanceMode_Task', async () => {
    const vc = fakeVcenter();
    const a = make();
    await a.enterMaintenance('esxa');
    vc.vmHost = 'host-2'; // the drain moved it: the task has completed, nobody looked yet
    await a.exitMaintenance('esxa');
    expect(count(vc, 'ExitMaintenanceMode_Task')).toBe(1);
    expect(vc.inMaintenance).toBe(false);
    expect(await record()).toBeNull();
  });

  it('a failed enter task is reported by describeHost (host not in maintenance) and once by enterMaintenance; the next call retries', async () => {
    const vc = fakeVcenter();
    const a = make();
    const b = make();
    await a.enterMaintenance('esxa');
    vc.tasks.get('task-1')!.failWith = 'A general system error occurred: hostd lost contact.';

    const facts = await b.describeHost('esxa');
    expect(facts.maintenance).toBe(false);
    expect(facts.enteringMaintenance).toBeUndefined();
    expect(facts.notes).toEqual([
      expect.stringMatching(/^entering maintenance failed in vCenter \(task task-1, started .*\): A general system error occurred: hostd lost contact\. esxa is not in maintenance and takes new VMs again\.$/),
    ]);
    expect(await record()).toMatchObject({ task: 'task-1', state: 'failed', fault: 'SystemError' });

    const err = await a.enterMaintenance('esxa').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdapterError);
    expect(err).toMatchObject({ code: 'maintenance-failed', host: 'esxa', op: 'enterMaintenance' });
    expect((err as Error).message).toContain('enterMaintenance on esxa: entering maintenance failed in vCenter (task task-1');
    expect((err as Error).message).toContain('Enter maintenance again to retry.');
    expect(count(vc, 'EnterMaintenanceMode_Task')).toBe(1);

    await b.enterMaintenance('esxa');
    expect(count(vc, 'EnterMaintenanceMode_Task')).toBe(2);
    expect(await record()).toMatchObject({ task: 'task-2', state: 'running' });
  });

  it('the process that started the task watches it: success forgets it, failure is recorded', async () => {
    const vc = fakeVcenter();
    const a = make({ maintenanceWatchMs: 20 });
    await a.enterMaintenance('esxa');
    vc.vmHost = 'host-2';
    await expect.poll(record, { timeout: 2000, interval: 20 }).toBeNull();
    expect(vc.inMaintenance).toBe(true);

    vc.inMaintenance = false;
    vc.vmHost = 'host-1';
    await a.enterMaintenance('esxa');
    vc.tasks.get('task-2')!.failWith = 'Operation timed out.';
    await expect.poll(record, { timeout: 2000, interval: 20 }).toMatchObject({ task: 'task-2', state: 'failed', error: 'Operation timed out.' });
  });

  it('notes a fully automated DRS cluster: vCenter would move the VMs itself', async () => {
    fakeVcenter({ drs: 'fullyAutomated' });
    const facts = await make().describeHost('esxa');
    expect(facts.notes).toEqual([expect.stringContaining('DRS of vCenter cluster Prod is fully automated: when esxa enters maintenance vCenter moves its powered-on VMs itself')]);
    nock.cleanAll();
    fakeVcenter({ drs: 'partiallyAutomated' });
    expect((await make().describeHost('esxa')).notes).toBeUndefined();
  });
});
