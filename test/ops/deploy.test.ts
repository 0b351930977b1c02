/**
 * The deployment files, checked without a cluster or a Docker engine: every Kubernetes manifest
 * validates against the Kubernetes (and Prometheus Operator) schemas shipped in
 * kubernetes-models; the pieces agree with each other and with Ferry (probe paths and ports,
 * selectors, grace periods vs SHUTDOWN_GRACE_MS, commands vs the Procfile, ferry.yml parses);
 * the Dockerfile and compose file say what the README promises.
 */
/* eslint-disable @typescript-eslint/no-explicit-any -- each manifest is validated against its schema first, then read loosely */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse } from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { parseConfig } from '../../src/config/load.js';
import { readEnv } from '../../src/env.js';
import { stateDir } from '../../src/jobs/epoch.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const K8S = path.join(ROOT, 'deploy/kubernetes');

type Doc = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; [k: string]: unknown };
const MODELS: Record<string, new (d: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/StatefulSet': StatefulSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

function validate(doc: Doc): void {
  const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
  if (!Model) throw new Error(`no schema for ${doc.apiVersion} ${doc.kind}`);
  new Model(doc as never).validate();
}

const docs: Doc[] = fs
  .readdirSync(K8S)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => parseAllDocuments(fs.readFileSync(path.join(K8S, f), 'utf8')).map((d) => d.toJS() as Doc));
const find = (kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata.name === name) as Doc & { spec: any; data?: Record<string, string> };
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) => Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('Kubernetes manifests', () => {
  it('each validates against its schema', () => {
    expect(docs.map((d) => d.kind).sort()).toEqual(['ConfigMap', 'ConfigMap', 'PodDisruptionBudget', 'PodDisruptionBudget', 'Secret', 'Service', 'Service', 'ServiceMonitor', 'StatefulSet', 'StatefulSet']);
    for (const d of docs) expect(() => validate(d), `${d.kind} ${d.metadata.name}`).not.toThrow();
  });

  it('the validator does reject a broken manifest', () => {
    const broken = structuredClone(find('StatefulSet', 'ferry-worker'));
    broken.spec.template.spec.containers[0].ports[0].containerPort = 'health';
    expect(() => validate(broken)).toThrow(/containerPort must be integer/);
    const monitor = structuredClone(find('ServiceMonitor', 'ferry'));
    monitor.spec.endpoints = 'all';
    expect(() => validate(monitor)).toThrow();
  });

  it('web and worker run the Procfile commands with probes on the health port, never the Slack port', () => {
    const procfile = Object.fromEntries(
      fs.readFileSync(path.join(ROOT, 'Procfile'), 'utf8').trim().split('\n').map((l) => [l.split(':')[0]!, l.slice(l.indexOf(':') + 1).trim()]),
    );
    const env = find('ConfigMap', 'ferry-env').data!;
    const parsed = readEnv(env);
    for (const [name, kind] of [['ferry-web', 'web'], ['ferry-worker', 'worker']] as const) {
      const dep = find('StatefulSet', name);
      const pod = dep.spec.template.spec;
      const c = pod.containers[0];
      // The image's entrypoint (node, its memory flags, dist/main.js) plus the mode.
      expect(procfile[kind]).toMatch(new RegExp(`^node (--[\\w-]+(=\\S+)? )*dist/main\\.js ${c.args.join(' ')}$`));
      expect(matches(dep.spec.selector.matchLabels, dep.spec.template.metadata.labels)).toBe(true);
      const health = c.ports.find((p: { name: string }) => p.name === 'health');
      expect(health.containerPort).toBe(parsed.healthPort);
      expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'health' });
      expect(c.livenessProbe.httpGet).toEqual({ path: '/livez', port: 'health' });
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      // The kubelet's kill comes after Ferry's own shutdown bound.
      expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(parsed.shutdownGraceMs);
      expect(c.envFrom).toEqual([{ configMapRef: { name: 'ferry-env' } }, { secretRef: { name: 'ferry-tokens' } }]);
      const pdb = find('PodDisruptionBudget', name);
      expect(matches(pdb.spec.selector.matchLabels, dep.spec.template.metadata.labels)).toBe(true);
    }
    expect(find('StatefulSet', 'ferry-worker').spec.replicas).toBeGreaterThanOrEqual(2);
    const svc = find('Service', 'ferry-web');
    expect(matches(svc.spec.selector, find('StatefulSet', 'ferry-web').spec.template.metadata.labels)).toBe(true);
    expect(svc.spec.ports.map((p: { targetPort: string }) => p.targetPort).sort()).toEqual(['health', 'slack']);
  });

  // Web and workers both hand out operation and approval ids, and each keeps the highest it saw
  // in a file outside Redis (src/jobs/epoch.ts) so that ids never start again at 1 after Redis
  // lost its data and every pod restarted. That file must be on a volume that outlives the pod:
  // one ReadWriteOnce claim per pod (replicas cannot share one), kept when the set is deleted.
  it('every web and worker pod keeps its id memory on a volume of its own that outlives the pod', () => {
    const dir = stateDir({ ...find('ConfigMap', 'ferry-env').data, HOME: '/home/node' });
    for (const name of ['ferry-web', 'ferry-worker']) {
      const set = find('StatefulSet', name);
      const c = set.spec.template.spec.containers[0];
      // The root filesystem is read-only: the directory is writable only on a mount.
      expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
      const mount = (c.volumeMounts as { name: string; mountPath: string; readOnly?: boolean }[]).find((m) => dir === m.mountPath || dir.startsWith(`${m.mountPath}/`));
      expect(mount, `${name} mounts ${dir}`).toBeDefined();
      expect(mount!.readOnly).not.toBe(true);
      // A claim template (a PVC per pod), not a pod volume: an emptyDir dies with the pod.
      expect((set.spec.template.spec.volumes as { name: string }[]).map((v) => v.name)).not.toContain(mount!.name);
      const claim = (set.spec.volumeClaimTemplates as { metadata: { name: string }; spec: { accessModes: string[] } }[]).find((t) => t.metadata.name === mount!.name);
      expect(claim, `${name} claims ${mount!.name}`).toBeDefined();
      expect(claim!.spec.accessModes).toEqual(['ReadWriteOnce']);
      expect(set.spec.persistentVolumeClaimRetentionPolicy).toEqual({ whenDeleted: 'Retain', whenScaled: 'Retain' });
      // Written by the non-root user the pod runs as.
      expect(set.spec.template.spec.securityContext.fsGroup).toBe(set.spec.template.spec.securityContext.runAsGroup);
    }
  });

  it('the ServiceMonitor scrapes /metrics on a port the selected Services have', () => {
    const mon = find('ServiceMonitor', 'ferry');
    const services = docs.filter((d) => d.kind === 'Service' && matches(mon.spec.selector.matchLabels, d.metadata.labels)) as (Doc & { spec: any })[];
    expect(services.map((s) => s.metadata.name).sort()).toEqual(['ferry-web', 'ferry-worker-metrics']);
    for (const s of services) expect(s.spec.ports.map((p: { name: string }) => p.name)).toContain(mon.spec.endpoints[0].port);
    expect(mon.spec.endpoints[0].path).toBe('/metrics');
  });

  it('the ConfigMap’s ferry.yml is a valid Ferry configuration', () => {
    const yml = find('ConfigMap', 'ferry-config').data!['ferry.yml']!;
    expect(() => parseConfig(yml, 'ferry.yml', {})).not.toThrow();
  });
});

describe('Dockerfile and compose', () => {
  const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');

  it('one Node major everywhere: 24 LTS in engines, .nvmrc, both image stages and CI (which installs it when missing)', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe('>=24');
    expect(fs.readFileSync(path.join(ROOT, '.nvmrc'), 'utf8').trim()).toBe('24');
    expect([...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1])).toEqual(['node:24-bookworm-slim', 'node:24-bookworm-slim']);
    const ci = fs.readFileSync(path.join(ROOT, '.ci/run'), 'utf8');
    expect(ci).toMatch(/grep -q '\^v24\\.'/);
    expect(ci).toMatch(/npm install -g [^\n]*node@24$/m);
    // This suite itself runs on it (CI puts it first on PATH).
    if (process.env.FERRY_REQUIRE_PEERS === '1') expect(process.versions.node.split('.')[0]).toBe('24');
  });

  it('multi-stage, non-root, node dist/main.js with web or worker as the command', () => {
    expect(dockerfile.match(/^FROM /gm)!.length).toBeGreaterThanOrEqual(2);
    expect(dockerfile).toMatch(/^FROM node:24[^\n]* AS build$/m);
    expect(dockerfile).toMatch(/^RUN npm run build && npm prune --omit=dev$/m);
    expect(dockerfile).toMatch(/^USER node$/m);
    const entry = JSON.parse(/^ENTRYPOINT (.*)$/m.exec(dockerfile)![1]!) as string[];
    const cmd = JSON.parse(/^CMD (.*)$/m.exec(dockerfile)![1]!) as string[];
    // The same command line the Procfile runs (and test/ops/entrypoints.test.ts starts from dist).
    const procfile = fs.readFileSync(path.join(ROOT, 'Procfile'), 'utf8');
    expect(procfile).toContain(`worker: ${[...entry, ...cmd].join(' ')}`);
    expect(procfile).toContain(`web: ${[...entry, 'web'].join(' ')}`);
    // Everything the runtime stage copies from the context exists.
    for (const m of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) for (const src of m[1]!.split(' ')) expect(fs.existsSync(path.join(ROOT, src)), src).toBe(true);
  });

  it('compose: Redis with AOF and noeviction, web, and two workers', () => {
    const compose = parse(fs.readFileSync(path.join(ROOT, 'compose.yaml'), 'utf8')) as { services: Record<string, any> };
    const redisCmd = compose.services.redis.command.join(' ');
    expect(redisCmd).toContain('--appendonly yes');
    expect(redisCmd).toContain('--maxmemory-policy noeviction');
    expect(compose.services.web.command).toEqual(['web']);
    expect(compose.services.worker.command).toEqual(['worker']);
    expect(compose.services.worker.deploy.replicas).toBe(2);
    for (const s of ['web', 'worker']) expect(() => readEnv(compose.services[s].environment)).not.toThrow();
  });

  it('compose: web and workers keep their id memory on the ferry-state volume, a directory the image makes for its user', () => {
    const compose = parse(fs.readFileSync(path.join(ROOT, 'compose.yaml'), 'utf8')) as { services: Record<string, any>; volumes: Record<string, unknown> };
    expect(Object.keys(compose.volumes)).toContain('ferry-state');
    for (const s of ['web', 'worker']) {
      const dir = stateDir({ ...compose.services[s].environment, HOME: '/home/node' });
      expect(compose.services[s].volumes, s).toContain(`ferry-state:${dir}`);
      // A fresh named volume takes the owner of the image's directory: the node user.
      expect(dockerfile).toContain(`mkdir -p ${dir} && chown -R node:node`);
    }
  });
});
