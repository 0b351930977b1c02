/** Registers the libvirt adapter: virsh over the shared SSH layer, cordon flags in Redis. */
import { registerAdapter } from '../registry.js';
import { SshRemoteShell } from '../ssh/index.js';
import { LibvirtAdapter, libvirtSettingsFrom } from './adapter.js';

registerAdapter('libvirt', (ctx) => {
  const ssh = ctx.clusterConfig.ssh;
  const libvirt = ctx.clusterConfig.libvirt ?? { uri: 'qemu:///system', migrateUri: 'qemu+ssh://{host}/system', virsh: 'virsh' };
  // libvirt hosts run a POSIX shell: timed-out commands are killed by pid (see SshShellOptions.posixKill).
  const shell = new SshRemoteShell(ssh ?? {}, { log: ctx.log, posixKill: true });
  return new LibvirtAdapter(libvirtSettingsFrom(ctx.cluster, ctx.hosts, libvirt, ssh?.addresses ?? {}), { shell, redis: ctx.redis, prefix: ctx.prefix, log: ctx.log });
});

export { LibvirtAdapter, libvirtSettingsFrom, type LibvirtSettings } from './adapter.js';
