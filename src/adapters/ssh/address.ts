/**
 * A host's SSH address as written in `ssh.addresses`: `[user@]host[:port]`, with IPv6 in
 * brackets (`[fd00::1]:2222`). A bare IPv6 address (`fd00::1`) is taken whole, without a port.
 * Pure; the schema validates every entry with it, so a bad one is refused at start-up.
 */
export interface SshAddress {
  host: string;
  port?: number;
  user?: string;
}

export function parseSshAddress(text: string): { ok: true; value: SshAddress } | { ok: false; error: string } {
  const s = text.trim();
  const bad = (why: string) => ({ ok: false as const, error: `"${text}" is not an SSH address ([user@]host[:port]): ${why}` });
  if (!s) return bad('it is empty');
  let rest = s;
  let user: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    user = rest.slice(0, at);
    rest = rest.slice(at + 1);
    if (!/^[A-Za-z0-9._][A-Za-z0-9._-]*$/.test(user)) return bad('the user name has characters a login name cannot have');
  }
  let host: string;
  let portText: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) return bad('"[" without "]"');
    host = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after && !after.startsWith(':')) return bad('only ":port" may follow "]"');
    portText = after ? after.slice(1) : undefined;
  } else if ((rest.match(/:/g) ?? []).length > 1) {
    host = rest; // bare IPv6
  } else {
    const colon = rest.indexOf(':');
    host = colon >= 0 ? rest.slice(0, colon) : rest;
    portText = colon >= 0 ? rest.slice(colon + 1) : undefined;
  }
  if (!host || /[\s/@[\]]/.test(host)) return bad('no host name or IP address');
  let port: number | undefined;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) return bad('the port must be a number from 1 to 65535');
    port = Number(portText);
  }
  return { ok: true, value: { host, ...(port !== undefined ? { port } : {}), ...(user !== undefined ? { user } : {}) } };
}
