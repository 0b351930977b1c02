/**
 * ferry.yml schema. Validated at start-up; errors name the bad key (see load.ts).
 * Secrets are never written in the file: "${VCENTER_PASSWORD}" is replaced from the environment.
 */
import { z } from 'zod';
import { parseSshAddress } from '../adapters/ssh/address.js';

/** Durations in config: "30m", "24h", "90s", "1h30m" or a number of seconds. */
export const duration = z.union([z.number().nonnegative(), z.string().regex(/^(\d+(ms|s|m|h|d))+$/, 'a duration like 30m, 24h or 1h30m')]);

const sshConnection = z
  .object({
    user: z.string().default('root'),
    port: z.number().int().positive().default(22),
    /** Private key file; when absent, the SSH agent (SSH_AUTH_SOCK) is used. */
    privateKeyPath: z.string().optional(),
    /** known_hosts file with the pinned host keys. */
    knownHosts: z.string().optional(),
    /** Trust-on-first-use: only when explicitly configured. */
    trustOnFirstUse: z.boolean().default(false),
    connectTimeout: duration.default('10s'),
    commandTimeout: duration.default('120s'),
    maxConcurrentCommands: z.number().int().positive().default(4),
    /**
     * host name -> where Ferry reaches it: "[user@]address[:port]" ("10.20.0.11",
     * "127.0.0.1:36871", "admin@kvm01.example.com:2222", "[fd00::1]:22"). A port or user given
     * here overrides `port`/`user` for that host alone.
     */
    addresses: z
      .record(
        z.string().superRefine((v, ctx) => {
          const r = parseSshAddress(v);
          if (!r.ok) ctx.addIssue({ code: z.ZodIssueCode.custom, message: r.error });
        }),
      )
      .default({}),
  })
  .strict();

const labSettings = z
  .object({
    seed: z.number().int().default(42),
    /** Per-call latency of the simulated hosts. */
    latencyMs: z.number().int().nonnegative().default(150),
    /** Time one simulated live migration takes. */
    migrationMs: z.number().int().nonnegative().default(3000),
    /** Injected faults: lab host or vm:<name> -> faults (src/adapters/lab/control.ts), validated at load. Also settable at run time (ferry lab fault). */
    faults: z.record(z.string()).default({}),
  })
  .strict();

const clusterSchema = z
  .object({
    adapter: z.enum(['lab', 'hyperv', 'libvirt', 'vsphere']),
    /** Host names, or selector strings ("hyp[01-24]"). */
    hosts: z.array(z.string()).min(1),
    migrationConcurrency: z.number().int().positive().max(16).optional(),
    /** Highest number of hosts of the cluster in maintenance at once (N+1 by default: 1). */
    maxInMaintenance: z.number().int().positive().optional(),
    ssh: sshConnection.optional(),
    hyperv: z
      .object({
        /** Hosts are failover-cluster nodes: Move-ClusterVirtualMachineRole, Suspend-ClusterNode. */
        failoverCluster: z.boolean().default(true),
        powershell: z.string().default('powershell.exe'),
      })
      .strict()
      .optional(),
    libvirt: z
      .object({
        /** URI virsh uses on the host itself; "{host}" is replaced by the Ferry host name. */
        uri: z.string().default('qemu:///system'),
        /** Migration destination URI template; {host} is the target's address. */
        migrateUri: z.string().default('qemu+ssh://{host}/system'),
        virsh: z.string().default('virsh'),
        /** Pools to treat as shared storage whatever their type (e.g. a dir pool on a cluster filesystem). */
        sharedPools: z.array(z.string()).default([]),
        /**
         * Longest one `virsh migrate` may run: then Ferry aborts it (domjobabort), the domain keeps
         * running on its source, and the drain treats it as a failed migration (rollback or hold).
         */
        migrateTimeout: duration.default('2h'),
        /** `virsh migrate --bandwidth`, in MiB/s; absent: QEMU's default (unlimited in libvirt 9). */
        migrateBandwidth: z.number().int().positive().optional(),
        /** `virsh migrate --auto-converge`: slow a guest's vCPUs down when it dirties memory faster than it copies. */
        autoConverge: z.boolean().default(false),
      })
      .strict()
      .optional(),
    vsphere: z
      .object({
        url: z.string().url(),
        user: z.string(),
        password: z.string(),
        datacenter: z.string().optional(),
        /** Cluster name in vCenter when it differs from Ferry's. */
        cluster: z.string().optional(),
        caFile: z.string().optional(),
        /** SHA-256 thumbprint of the vCenter certificate, "AB:CD:…". */
        thumbprint: z.string().optional(),
        insecure: z.boolean().default(false),
        /** vCenter host names -> Ferry host names when they differ. */
        hostNames: z.record(z.string()).default({}),
        /** One SOAP request's limit. */
        requestTimeout: duration.default('60s'),
        /** Touch the session this often so vCenter does not expire it while idle. */
        keepAlive: duration.default('10m'),
        /** How often a running vCenter task is polled for progress. */
        taskPollInterval: duration.default('1s'),
        /**
         * EnterMaintenanceMode_Task timeout. The task runs while the drain moves the VMs off and
         * completes once no powered-on VM is left; with a timeout vCenter fails it if the host is
         * not empty by then (the host leaves "entering maintenance" and the failure is reported).
         * 0 (recommended) lets vCenter wait indefinitely.
         */
        maintenanceTimeout: duration.default('0s'),
      })
      .strict()
      .optional(),
  })
  .strict();

const principal = z.string().regex(/^(@?[A-Za-z0-9._-]+|[UWS][A-Z0-9]{2,})$/, 'a Slack user ID (U…), a user group ID (S…), or a name');

const approvalPolicy = z
  .object({
    approvals: z.number().int().min(0).max(5).default(1),
    /** Slack user IDs, user group IDs (S…), or Ferry group names ("group:approvers"). */
    approvers: z.array(z.string()).default(['group:approvers']),
    expiry: duration.default('30m'),
  })
  .strict();

export const configSchema = z
  .object({
    /** Default IANA zone for times without one. */
    timezone: z.string().default('UTC'),
    limits: z
      .object({
        /** Largest selector expansion accepted. */
        selectorMax: z.number().int().positive().default(500),
        /** Hosts swept at once across all workers. */
        sweepConcurrency: z.number().int().positive().default(16),
        /** Default live migrations at once per host (Hyper-V's default is 2). */
        migrationConcurrency: z.number().int().positive().default(2),
        migrationRetries: z.number().int().nonnegative().default(1),
      })
      .strict()
      .default({}),
    lab: labSettings.default({}),
    clusters: z.record(clusterSchema).default({}),
    /** Ferry groups: name -> Slack user IDs, user group IDs, or console names. */
    groups: z.record(z.array(principal)).default({}),
    channels: z
      .object({
        /** Where announcements (patch windows, pause) go. */
        announcements: z.string().optional(),
        /** Channels commands are accepted in; empty = anywhere the app is. */
        allowed: z.array(z.string()).default([]),
      })
      .strict()
      .default({}),
    /** Who may run which command: command name -> principals ("group:operators", "*" = everyone). */
    permissions: z.record(z.array(z.string())).default({}),
    approvals: z.record(approvalPolicy).default({}),
    audit: z.object({ retentionDays: z.number().int().positive().default(90) }).strict().default({}),
    console: z.object({ user: z.string().optional() }).strict().default({}),
    patchWindows: z
      .object({
        announceOffsets: z.array(duration).default(['24h', '1h', '0s']),
        announceEnd: z.boolean().default(true),
        /** Announcements missed while Ferry was down: post marked late, or skip. */
        missed: z.enum(['late', 'skip']).default('late'),
        maxDuration: duration.default('12h'),
        maxFailedHosts: z.number().int().nonnegative().default(1),
        /** A window typed without "for <duration>" lasts this long (capped at maxDuration). */
        defaultDuration: duration.default('4h'),
        /** Attempts per host in a rolling run beyond the first (a failed host is tried again). */
        hostRetries: z.number().int().nonnegative().max(5).default(0),
        /** How often every process re-checks windows for announcements due (the catch-up scan). */
        scanInterval: duration.default('1m'),
        /** Lateness still counted as on time (queue latency, clock skew). */
        grace: duration.default('60s'),
        /**
         * Patch hook: manual (Ferry asks for Done), or a command run on the drained host through
         * its adapter (runCommand: sh -c on libvirt, PowerShell on Hyper-V; not on vSphere).
         * "{host}" in the command becomes the Ferry host name; a non-zero exit, an error or
         * running past `timeout` fails the host.
         */
        hook: z
          .union([
            z.object({ manual: z.literal(true) }).strict(),
            z.object({ command: z.string().trim().min(1, 'the hook command is empty'), timeout: duration.default('2h') }).strict(),
          ])
          .default({ manual: true }),
      })
      .strict()
      .default({}),
  })
  .strict();

export type FerryConfig = z.infer<typeof configSchema>;
export type ClusterConfig = z.infer<typeof clusterSchema>;
export type ApprovalPolicyConfig = z.infer<typeof approvalPolicy>;
export type SshConnectionConfig = z.infer<typeof sshConnection>;
export type LabSettings = z.infer<typeof labSettings>;
