export { SshRemoteShell, type SshShellOptions, type SshSettings } from './shell.js';
export { execChecked, stderrTail } from './exec.js';
export { fingerprint, lookupKnownHosts, appendKnownHost, hostPatternFor } from './known-hosts.js';
export { Semaphore } from './semaphore.js';
export { shellQuote, type RemoteShell, type ExecOptions, type ExecResult } from './types.js';
