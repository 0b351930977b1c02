/**
 * Configuration details that are nobody's business in a chat (issue 13): the SSH private-key
 * and known_hosts paths, the vCenter endpoint and its user. Adapter errors carry them for the
 * log; everything Ferry says is passed through here first, and they read as what they are.
 */
import type { FerryConfig } from '../config/schema.js';
import type { Message } from './messages.js';

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export function configRedactor(config: FerryConfig): (msg: Message) => Message {
  const pairs: [string, string][] = [];
  for (const c of Object.values(config.clusters)) {
    if (c.ssh?.privateKeyPath) pairs.push([c.ssh.privateKeyPath, 'the configured SSH key']);
    if (c.ssh?.knownHosts) pairs.push([c.ssh.knownHosts, 'the configured known_hosts file']);
    if (c.vsphere) {
      const u = new URL(c.vsphere.url);
      // "vCenter <host>" as adapters word it reads "the cluster's vCenter", not "vCenter the cluster's vCenter".
      for (const s of [c.vsphere.url, u.origin, u.host]) pairs.push([`vCenter ${s}`, 'the cluster\u2019s vCenter'], [s, 'the cluster\u2019s vCenter']);
      // A user name that is also an ordinary word ("ferry") is left alone; account names are not.
      if (/[@\\]/.test(c.vsphere.user) || c.vsphere.user.length >= 8) pairs.push([c.vsphere.user, 'the configured vCenter user']);
    }
  }
  if (!pairs.length) return (m) => m;
  // Longest first: a URL before the host name inside it.
  pairs.sort((a, b) => b[0].length - a[0].length);
  const re = new RegExp(pairs.map(([s]) => escapeRe(s)).join('|'), 'g');
  const to = new Map(pairs);
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return v.replace(re, (m) => to.get(m) ?? m);
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return (m) => walk(m) as Message;
}
