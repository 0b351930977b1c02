/**
 * A small vim25 SOAP client: service content, session login with the vmware_soap_session
 * cookie, one re-login when the server says NotAuthenticated, keep-alive, PropertyCollector
 * retrieval (RetrievePropertiesEx + ContinueRetrievePropertiesEx) and task polling.
 */
import type { Logger } from '../../log.js';
import { Transport, TransportError, type TransportOptions } from './transport.js';
import {
  child,
  children,
  envelope,
  isObject,
  moref,
  optText,
  parseXml,
  path,
  ref,
  text,
  typed,
  xsiType,
  num,
  type MoRef,
  type XmlInputObject,
  type XmlObject,
  type XmlValue,
} from './xml.js';

export interface VimOptions extends TransportOptions {
  user: string;
  password: string;
  /** How often an idle session is touched so vCenter does not expire it (0 = never). */
  keepAliveMs: number;
  log?: Logger;
}

/** A SOAP fault from vCenter: faultType is the vim fault ("InvalidLogin", "NotAuthenticated"). */
export class SoapFault extends Error {
  constructor(
    readonly method: string,
    readonly faultType: string,
    message: string,
    readonly detail?: XmlValue,
  ) {
    super(message);
    this.name = 'SoapFault';
  }
}

export interface ServiceContent {
  rootFolder: MoRef;
  propertyCollector: MoRef;
  viewManager: MoRef;
  sessionManager: MoRef;
  vmProvisioningChecker?: MoRef;
  apiVersion: string;
  fullName: string;
  apiType: string;
}

export interface ObjectContent {
  obj: MoRef;
  props: Map<string, XmlValue>;
  /** Properties the server could not read, with the fault type. */
  missing: { path: string; fault: string }[];
}

export interface PropSpec {
  type: string;
  paths: string[];
}

export type TaskState = 'queued' | 'running' | 'success' | 'error';

export interface TaskInfo {
  state: TaskState;
  progress?: number;
  error?: { fault: string; message: string };
  result?: XmlValue;
}

const SERVICE_INSTANCE: MoRef = { type: 'ServiceInstance', value: 'ServiceInstance' };

export class VimClient {
  private readonly transport: Transport;
  private content?: ServiceContent;
  private cookie?: string;
  /** Bumped on every login so objects tied to a session (container views) are recreated. */
  private generation = 0;
  private loggingIn?: Promise<void>;
  private keepAlive?: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly opts: VimOptions) {
    this.transport = new Transport(opts);
  }

  get endpoint(): string {
    return this.transport.endpoint;
  }

  get sessionGeneration(): number {
    return this.generation;
  }

  get serviceContent(): ServiceContent | undefined {
    return this.content;
  }

  /** One SOAP request, no session handling. Throws SoapFault or TransportError. */
  async invoke(method: string, params: XmlInputObject, signal?: AbortSignal): Promise<XmlValue | undefined> {
    const headers: Record<string, string> = { SOAPAction: `urn:vim25/${this.content?.apiVersion ?? '6.5'}` };
    if (this.cookie) headers.Cookie = this.cookie;
    const reply = await this.transport.post(envelope(method, params), headers, signal);
    for (const c of reply.setCookie) {
      const m = /^(vmware_soap_session=[^;]*)/.exec(c);
      if (m) this.cookie = m[1];
    }
    let doc: XmlObject;
    try {
      doc = parseXml(reply.body);
    } catch {
      throw new TransportError(`HTTP ${reply.status} with a body that is not SOAP: ${reply.body.slice(0, 200)}`, 'http');
    }
    const body = path(doc, 'Envelope.Body');
    if (!isObject(body)) throw new TransportError(`HTTP ${reply.status} without a SOAP body`, 'http');
    const fault = child(body, 'Fault');
    if (fault !== undefined) throw toFault(method, fault);
    const response = child(body, `${method}Response`);
    if (response === undefined) throw new TransportError(`HTTP ${reply.status}: no ${method}Response in the reply`, 'http');
    return child(response, 'returnval');
  }

  /** RetrieveServiceContent + Login. Safe to call again (re-login). */
  async login(signal?: AbortSignal): Promise<void> {
    if (this.closed) throw new Error('vSphere client is closed');
    if (!this.loggingIn) {
      this.loggingIn = (async () => {
        if (!this.content) this.content = await this.retrieveServiceContent(signal);
        this.cookie = undefined;
        await this.invoke(
          'Login',
          { _this: ref(this.content.sessionManager), userName: this.opts.user, password: this.opts.password },
          signal,
        );
        if (!this.cookie) throw new TransportError('Login answered without a vmware_soap_session cookie', 'http');
        this.generation++;
        this.startKeepAlive();
      })().finally(() => {
        this.loggingIn = undefined;
      });
    }
    return this.loggingIn;
  }

  private async retrieveServiceContent(signal?: AbortSignal): Promise<ServiceContent> {
    const rv = await this.invoke('RetrieveServiceContent', { _this: ref(SERVICE_INSTANCE) }, signal);
    const need = (name: string): MoRef => {
      const r = moref(child(rv, name));
      if (!r) throw new TransportError(`service content has no ${name}`, 'http');
      return r;
    };
    return {
      rootFolder: need('rootFolder'),
      propertyCollector: need('propertyCollector'),
      viewManager: need('viewManager'),
      sessionManager: need('sessionManager'),
      vmProvisioningChecker: moref(child(rv, 'vmProvisioningChecker')),
      apiVersion: text(path(rv, 'about.apiVersion')) || '6.5',
      apiType: text(path(rv, 'about.apiType')),
      fullName: text(path(rv, 'about.fullName')),
    };
  }

  /**
   * Runs fn in a session. When vCenter answers NotAuthenticated (expired or terminated
   * session), logs in again once and repeats fn; a second NotAuthenticated is thrown.
   */
  async withSession<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (!this.cookie || !this.content) await this.login(signal);
    const gen = this.generation;
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof SoapFault) || err.faultType !== 'NotAuthenticated') throw err;
      this.opts.log?.warn({ endpoint: this.endpoint }, 'vSphere session no longer valid; logging in again');
      // Another caller may already have logged in again.
      if (this.generation === gen) await this.login(signal);
      return fn();
    }
  }

  /** A session call: method on `this` with params. */
  call(method: string, thisRef: MoRef, params: XmlInputObject = {}, signal?: AbortSignal): Promise<XmlValue | undefined> {
    return this.withSession(() => this.invoke(method, { _this: ref(thisRef), ...params }, signal), signal);
  }

  requireContent(): ServiceContent {
    if (!this.content) throw new Error('not logged in');
    return this.content;
  }

  /**
   * RetrievePropertiesEx over a container view (or a single object when `view` is an object
   * ref and no traversal is wanted), following the continuation token.
   */
  async retrieve(root: MoRef, specs: PropSpec[], opts: { traverseView: boolean; signal?: AbortSignal }): Promise<ObjectContent[]> {
    const content = this.requireContent();
    const objectSet: XmlInputObject = opts.traverseView
      ? {
          obj: ref(root),
          skip: true,
          selectSet: typed('TraversalSpec', { name: 'view', type: 'ContainerView', path: 'view', skip: false }),
        }
      : { obj: ref(root), skip: false };
    const specSet: XmlInputObject = {
      propSet: specs.map((s) => ({ type: s.type, all: false, pathSet: s.paths })),
      objectSet,
    };
    const out: ObjectContent[] = [];
    let rv = await this.invoke(
      'RetrievePropertiesEx',
      { _this: ref(content.propertyCollector), specSet, options: { maxObjects: 500 } },
      opts.signal,
    );
    for (;;) {
      for (const o of children(rv, 'objects')) out.push(toObjectContent(o));
      const token = optText(child(rv, 'token'));
      if (!token) break;
      rv = await this.invoke('ContinueRetrievePropertiesEx', { _this: ref(content.propertyCollector), token }, opts.signal);
    }
    // Some servers (govmomi's simulator among them) answer an unauthenticated retrieval with
    // per-property NotAuthenticated instead of a fault; treat it the same way.
    if (out.some((o) => o.missing.some((m) => m.fault === 'NotAuthenticated'))) {
      throw new SoapFault('RetrievePropertiesEx', 'NotAuthenticated', 'The session is not authenticated.');
    }
    return out;
  }

  /** Reads a task's info once. */
  async taskInfo(task: MoRef, signal?: AbortSignal): Promise<TaskInfo> {
    const [o] = await this.withSession(() => this.retrieve(task, [{ type: 'Task', paths: ['info'] }], { traverseView: false, signal }), signal);
    // Some servers leave an object they no longer know out of the result instead of a fault.
    if (!o) throw new SoapFault('RetrievePropertiesEx', 'ManagedObjectNotFound', `vCenter no longer knows task ${task.value}`);
    const info = o.props.get('info');
    if (!info) throw new TransportError(`task ${task.value} has no info`, 'http');
    const state = text(child(info, 'state')) as TaskState;
    const err = child(info, 'error');
    const progressText = optText(child(info, 'progress'));
    return {
      state,
      progress: progressText === undefined ? undefined : num(progressText),
      error: err === undefined ? undefined : { fault: xsiType(child(err, 'fault')) ?? 'Fault', message: text(child(err, 'localizedMessage')) },
      result: child(info, 'result'),
    };
  }

  private startKeepAlive(): void {
    if (this.keepAlive || this.opts.keepAliveMs <= 0) return;
    this.keepAlive = setInterval(() => {
      // CurrentTime is the cheapest authenticated call; withSession re-logs in if it expired.
      this.call('CurrentTime', SERVICE_INSTANCE).catch((err: unknown) => {
        this.opts.log?.warn({ endpoint: this.endpoint, err: err }, 'vSphere keep-alive failed');
      });
    }, this.opts.keepAliveMs);
    this.keepAlive.unref();
  }

  /** Logout (best effort) and release sockets. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.keepAlive) clearInterval(this.keepAlive);
    try {
      if (this.cookie && this.content) await this.invoke('Logout', { _this: ref(this.content.sessionManager) });
    } catch {
      // The session may be gone already; nothing to undo.
    } finally {
      this.cookie = undefined;
      this.transport.close();
    }
  }

  /** Current session key (the cookie value), for tests that invalidate it behind our back. */
  get sessionKey(): string | undefined {
    return this.cookie?.split('=')[1]?.replace(/^"|"$/g, '');
  }
}

function toFault(method: string, fault: XmlValue): SoapFault {
  const faultString = text(child(fault, 'faultstring'));
  const detail = child(fault, 'detail');
  let faultType = 'Fault';
  if (isObject(detail)) {
    const [name, value] = Object.entries(detail).find(([k]) => !k.startsWith('@_') && k !== '#text') ?? [];
    if (name) faultType = xsiType(value) ?? name.replace(/Fault$/, '');
  }
  return new SoapFault(method, faultType, faultString || faultType, detail);
}

function toObjectContent(o: XmlValue): ObjectContent {
  const obj = moref(child(o, 'obj'));
  if (!obj) throw new TransportError('object content without obj', 'http');
  const props = new Map<string, XmlValue>();
  for (const p of children(o, 'propSet')) {
    const v = child(p, 'val');
    if (v !== undefined) props.set(text(child(p, 'name')), v);
  }
  const missing = children(o, 'missingSet').map((m) => ({
    path: text(child(m, 'path')),
    fault: xsiType(path(m, 'fault.fault')) ?? 'Fault',
  }));
  return { obj, props, missing };
}
