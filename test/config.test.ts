import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { parseConfig, loadConfig, ConfigError } from '../src/config/load.js';
import { parseSshAddress } from '../src/adapters/ssh/address.js';
import { libvirtSettingsFrom } from '../src/adapters/libvirt/adapter.js';

describe('configuration', () => {
  it('the example file validates (with its secret from the environment)', () => {
    const loaded = parseConfig(fs.readFileSync('ferry.example.yml', 'utf8'), 'ferry.example.yml', { VCENTER_PASSWORD: 's3cret' });
    expect(Object.keys(loaded.config.clusters)).toEqual(['hv-prod', 'kvm-edge', 'vmw-dc1']);
    expect(loaded.inventory.clusters['hv-prod']).toHaveLength(16);
    expect(loaded.config.clusters['vmw-dc1']!.vsphere!.password).toBe('s3cret');
  });

  it('no file: the built-in lab of 99 hosts in four clusters', () => {
    const loaded = loadConfig({}, '/nonexistent-dir');
    expect(loaded.source).toBe('built-in lab');
    expect(loaded.inventory.hosts).toHaveLength(99);
    expect(Object.keys(loaded.inventory.clusters)).toHaveLength(4);
  });

  it('a file without clusters: runs on the built-in lab, with its own channels, groups and patch windows', () => {
    const yaml = 'groups:\n  operators: [erin]\n  approvers: [frank]\nchannels:\n  announcements: C0ANN\nlab:\n  latencyMs: 5\n';
    const loaded = parseConfig(yaml, 'ferry.yml', {});
    expect(loaded.inventory.hosts).toHaveLength(99);
    expect(loaded.inventory.clusters).toMatchObject({ 'prod-a': expect.arrayContaining(['hyp01', 'hyp24']), 'prod-b': expect.arrayContaining(['hyp25', 'hyp48']), 'prod-c': expect.arrayContaining(['hyp49', 'hyp72']), dev: expect.arrayContaining(['hyp73', 'hyp99']) });
    expect(loaded.inventory.clusters['dev']).toHaveLength(27);
    expect(loaded.config.groups.operators).toEqual(['erin']);
    expect(loaded.config.lab.latencyMs).toBe(5);
  });

  it.each([
    ['lab:\n  faults: { hyp03: migrate }\n', /^t\.yml: lab\.faults\.hyp03: unknown lab fault "migrate"/],
    ['lab:\n  faults: { hyp03: "slow:soon" }\n', /^t\.yml: lab\.faults\.hyp03: "slow:soon"/],
    ['lab:\n  faults: { hyp300: unreachable }\n', /^t\.yml: lab\.faults\.hyp300: hyp300 is not a lab host/],
    ['lab:\n  faults: { "vm:web01": unreachable }\n', /^t\.yml: lab\.faults\.vm:web01: "unreachable" is a host fault/],
    ['lab:\n  faults: { hyp03: migrate-fail }\n', /^t\.yml: lab\.faults\.hyp03: "migrate-fail" is a VM fault/],
    ['lab:\n  faults: { hyp03: "fail:migrate@0" }\n', /^t\.yml: lab\.faults\.hyp03: "fail:migrate@0"/],
  ])('lab fault %j is refused at start', (yaml, re) => {
    expect(() => parseConfig(yaml, 't.yml', {})).toThrow(re);
  });

  it('lab faults that are valid load: per host, per VM, once, on the n-th call, after switch-over', () => {
    const yaml = 'lab:\n  faults:\n    hyp03: "fail:migrate@2, slow:200"\n    "vm:web01": "migrate-fail-after-once"\n    "vm:db02": "migrate-fail@3"\n';
    expect(Object.keys(parseConfig(yaml, 't.yml', {}).config.lab.faults)).toHaveLength(3);
  });

  it.each([
    ['clusters:\n  a:\n    adapter: xen\n    hosts: [h1]\n', /^t\.yml: clusters\.a\.adapter: Invalid enum value/],
    ['clusters:\n  a:\n    adapter: lab\n    hosts: [h1]\n    colour: red\n', /^t\.yml: clusters\.a: unknown key "colour"/],
    ['clusters:\n  a:\n    adapter: lab\n    hosts: ["h[09-01]"]\n', /^t\.yml: clusters\.a\.hosts\.0: The range h\[09-01\] runs backwards/],
    ['clusters:\n  a:\n    adapter: lab\n    hosts: [h1]\n  b:\n    adapter: lab\n    hosts: [h1]\n', /^t\.yml: clusters\.b\.hosts\.0: h1 is already in cluster a\./],
    ['clusters:\n  a:\n    adapter: vsphere\n    hosts: [e1]\n', /^t\.yml: clusters\.a\.vsphere: required for adapter vsphere/],
    ['clusters:\n  a:\n    adapter: libvirt\n    hosts: [k1]\n', /^t\.yml: clusters\.a\.ssh: required for adapter libvirt/],
    ['clusters:\n  a:\n    adapter: vsphere\n    hosts: [e1]\n    vsphere: { url: "https://vc/sdk", user: u, password: "${NOPE}" }\n', /^t\.yml: clusters\.a\.vsphere\.password: environment variable NOPE is not set\./],
    ['limits: { selectorMax: -1 }\nclusters:\n  a: { adapter: lab, hosts: [h1] }\n', /^t\.yml: limits\.selectorMax: Number must be greater than 0/],
    ['clusters: {}\n', /^t\.yml: clusters: at least one cluster is required \(leave clusters out to use the built-in lab\)\./],
    ['clusters: [oops\n', /^t\.yml: not valid YAML/],
    ['clusters:\n  a:\n    adapter: libvirt\n    hosts: [k1]\n    ssh: { addresses: { k1: "10.0.0.1:99999" } }\n', /^t\.yml: clusters\.a\.ssh\.addresses\.k1: "10\.0\.0\.1:99999" is not an SSH address \(\[user@\]host\[:port\]\): the port must be a number from 1 to 65535/],
    ['clusters:\n  a:\n    adapter: libvirt\n    hosts: [k1]\n    ssh: { addresses: { k1: "root@" } }\n', /^t\.yml: clusters\.a\.ssh\.addresses\.k1: "root@" is not an SSH address .*: no host name or IP address/],
    ['clusters:\n  a:\n    adapter: libvirt\n    hosts: [k1]\n    libvirt: { migrateBandwidth: 0 }\n    ssh: {}\n', /^t\.yml: clusters\.a\.libvirt\.migrateBandwidth: Number must be greater than 0/],
  ])('%j is refused naming the key', (yaml, re) => {
    expect(() => parseConfig(yaml, 't.yml', {})).toThrow(ConfigError);
    expect(() => parseConfig(yaml, 't.yml', {})).toThrow(re);
  });

  it.each([
    ['10.20.0.11', { host: '10.20.0.11' }],
    ['127.0.0.1:36871', { host: '127.0.0.1', port: 36871 }],
    ['admin@kvm01.example.com:2222', { host: 'kvm01.example.com', port: 2222, user: 'admin' }],
    ['root@127.0.77.2', { host: '127.0.77.2', user: 'root' }],
    ['[fd00::1]:22', { host: 'fd00::1', port: 22 }],
    ['fd00::1', { host: 'fd00::1' }],
  ])('SSH address %j', (text, want) => {
    expect(parseSshAddress(text)).toEqual({ ok: true, value: want });
  });

  it('the pair-style libvirt cluster: address with port, per-host user, bandwidth, timeout and auto-converge', () => {
    const yaml = `clusters:
  pair:
    adapter: libvirt
    hosts: [kvm01, kvm02]
    ssh: { port: 42622, addresses: { kvm01: "127.0.0.1:36871", kvm02: "admin@10.0.0.2" } }
    libvirt: { migrateUri: "qemu+ssh://root@{host}:42622/system", migrateBandwidth: 100, migrateTimeout: 15m, autoConverge: true }
`;
    const c = parseConfig(yaml, 't.yml', {}).config.clusters['pair']!;
    const s = libvirtSettingsFrom('pair', ['kvm01', 'kvm02'], c.libvirt!, c.ssh!.addresses);
    // {host} is the address alone: Ferry's SSH user and port are not the hosts' migration path.
    expect(s.addresses).toEqual({ kvm01: '127.0.0.1', kvm02: '10.0.0.2' });
    expect(s).toMatchObject({ migrateBandwidthMiBs: 100, migrateTimeoutMs: 15 * 60_000, autoConverge: true });
  });
});
