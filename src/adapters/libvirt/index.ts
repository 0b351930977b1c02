/** The libvirt adapter's factory: virsh over the shared SSH layer, cordon flags in Redis. */
import type { AdapterContext, AdapterFactory } from '../registry.js';
import { SshRemoteShell } from '../ssh/index.js';
import type { RemoteShell } from '../ssh/types.js';
import { LibvirtAdapter, libvirtSettingsFrom } from './adapter.js';

/**
 * The adapter the registry builds for a `adapter: libvirt` cluster. `wrapShell` is the one seam
 * for tests that must stand in for what libvirt's test driver cannot do (migrate, domjobinfo,
 * stateful nodedev-create/destroy) while every other virsh call still goes over the real SSH.
 */
export function libvirtAdapterFor(ctx: AdapterContext, opts: { wrapShell?: (shell: RemoteShell) => RemoteShell } = {}): LibvirtAdapter {
  const ssh = ctx.clusterConfig.ssh;
  const libvirt = ctx.clusterConfig.libvirt ?? { uri: 'qemu:///system', migrateUri: 'qemu+ssh://{host}/system', virsh: 'virsh' };
  // libvirt hosts run a POSIX shell: timed-out commands are killed by pid (see SshShellOptions.posixKill).
  const ssh2: RemoteShell = new SshRemoteShell(ssh ?? {}, { log: ctx.log, posixKill: true });
  const shell = opts.wrapShell ? opts.wrapShell(ssh2) : ssh2;
  return new LibvirtAdapter(libvirtSettingsFrom(ctx.cluster, ctx.hosts, libvirt, ssh?.addresses ?? {}), { shell, redis: ctx.redis, prefix: ctx.prefix, log: ctx.log });
}

export const libvirtAdapterFactory: AdapterFactory = (ctx) => libvirtAdapterFor(ctx);

export { LibvirtAdapter, libvirtSettingsFrom, type LibvirtSettings } from './adapter.js';
