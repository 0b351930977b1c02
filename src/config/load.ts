/**
 * Loads ferry.yml (or FERRY_CONFIG), substitutes ${ENV} secrets, validates, and builds the
 * inventory. Errors name the key: "ferry.yml: clusters.prod-a.adapter: expected one of …".
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { ZodError } from 'zod';
import { configSchema, type FerryConfig } from './schema.js';
import { LAB_DEFAULT_YAML } from './lab-default.js';
import { expandNames } from '../core/selectors.js';
import { validateFaults } from '../adapters/lab/control.js';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface Inventory {
  /** All hosts, in configuration order. */
  hosts: string[];
  clusters: Record<string, string[]>;
  clusterOf: Record<string, string>;
}

export interface LoadedConfig {
  config: FerryConfig;
  inventory: Inventory;
  /** Where it came from: a path, or "built-in lab". */
  source: string;
}

/** Replace ${NAME} with the environment's value; a missing variable is an error naming the key. */
function substituteEnv(value: unknown, env: NodeJS.ProcessEnv, keyPath: string[], source: string): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const v = env[name];
      if (v === undefined) throw new ConfigError(`${source}: ${keyPath.join('.')}: environment variable ${name} is not set.`);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, env, [...keyPath, String(i)], source));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteEnv(v, env, [...keyPath, k], source)]));
  }
  return value;
}

function describeZodError(err: ZodError, source: string): string {
  return err.issues
    .slice(0, 5)
    .map((i) => {
      const key = i.path.join('.') || '(top level)';
      const msg = i.code === 'unrecognized_keys' ? `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}` : i.message;
      return `${source}: ${key}: ${msg}`;
    })
    .join('\n');
}

export function buildInventory(config: FerryConfig, source: string): Inventory {
  const hosts: string[] = [];
  const clusters: Record<string, string[]> = {};
  const clusterOf: Record<string, string> = {};
  for (const [name, cluster] of Object.entries(config.clusters)) {
    const members: string[] = [];
    for (const [i, entry] of cluster.hosts.entries()) {
      const names = expandNames(entry);
      if (!names.ok) throw new ConfigError(`${source}: clusters.${name}.hosts.${i}: ${names.error}`);
      for (const h of names.value) {
        if (clusterOf[h]) throw new ConfigError(`${source}: clusters.${name}.hosts.${i}: ${h} is already in cluster ${clusterOf[h]}.`);
        clusterOf[h] = name;
        members.push(h);
        hosts.push(h);
      }
    }
    clusters[name] = members;
  }
  return { hosts, clusters, clusterOf };
}

export function parseConfig(text: string, source: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  let raw: unknown;
  try {
    raw = YAML.parse(text) ?? {};
  } catch (e) {
    throw new ConfigError(`${source}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const substituted = substituteEnv(raw, env, [], source);
  // No clusters: the built-in lab's, so channels, groups and patch windows can be set on it.
  const withClusters =
    substituted && typeof substituted === 'object' && !Array.isArray(substituted) && !('clusters' in substituted)
      ? { ...substituted, clusters: (YAML.parse(LAB_DEFAULT_YAML) as { clusters: unknown }).clusters }
      : substituted;
  const parsed = configSchema.safeParse(withClusters);
  if (!parsed.success) throw new ConfigError(describeZodError(parsed.error, source));
  const config = parsed.data;
  for (const [name, c] of Object.entries(config.clusters)) {
    if (c.adapter === 'vsphere' && !c.vsphere) throw new ConfigError(`${source}: clusters.${name}.vsphere: required for adapter vsphere (url, user, password).`);
    if ((c.adapter === 'hyperv' || c.adapter === 'libvirt') && !c.ssh) {
      throw new ConfigError(`${source}: clusters.${name}.ssh: required for adapter ${c.adapter} (user, privateKeyPath, knownHosts).`);
    }
  }
  if (Object.keys(config.clusters).length === 0) throw new ConfigError(`${source}: clusters: at least one cluster is required (leave clusters out to use the built-in lab).`);
  const inventory = buildInventory(config, source);
  // A fault the lab cannot apply is refused now, not found later as an unreachable host.
  const labHosts = inventory.hosts.filter((h) => config.clusters[inventory.clusterOf[h]!]?.adapter === 'lab');
  for (const [target, spec] of Object.entries(config.lab.faults)) {
    try {
      validateFaults(target, spec, labHosts);
    } catch (e) {
      throw new ConfigError(`${source}: lab.faults.${target}: ${(e as Error).message}.`);
    }
  }
  return { config, inventory, source };
}

/** FERRY_CONFIG, else ./ferry.yml, else the built-in lab. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): LoadedConfig {
  const explicit = env.FERRY_CONFIG;
  const file = explicit ? path.resolve(cwd, explicit) : path.join(cwd, 'ferry.yml');
  if (fs.existsSync(file)) return parseConfig(fs.readFileSync(file, 'utf8'), path.basename(file), env);
  if (explicit) throw new ConfigError(`FERRY_CONFIG points at ${file}, which does not exist.`);
  return { ...parseConfig(LAB_DEFAULT_YAML, 'built-in lab', env), source: 'built-in lab' };
}
