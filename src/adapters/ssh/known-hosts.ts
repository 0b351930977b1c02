/**
 * known_hosts handling for pinned SSH host keys: the OpenSSH file format (plain, "[host]:port",
 * comma lists, hashed "|1|salt|hash" entries, @revoked markers), SHA256 fingerprints as
 * `ssh-keygen -lf` prints them, and the append used by explicit trust-on-first-use.
 */
import { createHash, createHmac } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface KnownHostKey {
  /** "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", … */
  type: string;
  /** The raw public key blob (SSH wire format), as ssh2 hands it to hostVerifier. */
  blob: Buffer;
  revoked: boolean;
}

/** The names OpenSSH looks a host up under: "host" on port 22, "[host]:port" otherwise. */
export function hostPatternFor(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** "SHA256:…" exactly as ssh-keygen -l prints it (unpadded base64). */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** Key type named inside the blob (first SSH string), so we never trust the file's label alone. */
export function blobKeyType(blob: Buffer): string | null {
  if (blob.length < 4) return null;
  const len = blob.readUInt32BE(0);
  if (len <= 0 || len > 64 || 4 + len > blob.length) return null;
  return blob.subarray(4, 4 + len).toString('latin1');
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

function patternMatches(pattern: string, name: string): boolean {
  if (pattern.startsWith('|1|')) {
    // Hashed entry: HMAC-SHA1 keyed with the salt over the name (HashKnownHosts yes).
    const [, , salt, hash] = pattern.split('|');
    if (!salt || !hash) return false;
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
    return mac === hash;
  }
  return globToRegExp(pattern).test(name);
}

/** Entries of a host list ("a,b,!c") matching any of the names, honouring negation. */
function hostListMatches(list: string, names: string[]): boolean {
  let matched = false;
  for (const raw of list.split(',')) {
    const negated = raw.startsWith('!');
    const pattern = negated ? raw.slice(1) : raw;
    if (names.some((n) => patternMatches(pattern, n))) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

/** Keys pinned for host:port in the file content. Unparseable lines are skipped, as ssh does. */
export function lookupKnownHosts(content: string, host: string, port: number): KnownHostKey[] {
  const names = [hostPatternFor(host, port)];
  const keys: KnownHostKey[] = [];
  for (const line of content.split(/\r?\n/)) {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith('#')) continue;
    const fields = trimmed.split(/\s+/);
    let marker: string | undefined;
    if (fields[0]?.startsWith('@')) marker = fields.shift();
    if (marker === '@cert-authority') continue; // CA-signed host certs are not supported here
    const [hosts, type, b64] = fields;
    if (!hosts || !type || !b64) continue;
    if (!hostListMatches(hosts, names)) continue;
    const blob = Buffer.from(b64, 'base64');
    if (blobKeyType(blob) !== type) continue;
    keys.push({ type, blob, revoked: marker === '@revoked' });
  }
  return keys;
}

export function readKnownHosts(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

/** Trust-on-first-use: record the presented key (only called when config allows it). */
export function appendKnownHost(file: string, host: string, port: number, blob: Buffer): void {
  const type = blobKeyType(blob);
  if (!type) throw new Error(`cannot record host key for ${host}: unrecognised key blob`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const existing = readKnownHosts(file);
  const sep = existing && !existing.endsWith('\n') ? '\n' : '';
  fs.appendFileSync(file, `${sep}${hostPatternFor(host, port)} ${type} ${blob.toString('base64')}\n`, { mode: 0o600 });
}

/** ssh2 server-host-key algorithm names for a known_hosts key type, so the server presents a pinned kind. */
export function hostKeyAlgorithms(types: Iterable<string>): string[] {
  const out: string[] = [];
  for (const t of types) {
    const algos = t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t];
    for (const a of algos) if (!out.includes(a)) out.push(a);
  }
  return out;
}
