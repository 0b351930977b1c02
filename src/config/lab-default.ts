/**
 * The embedded default: a lab fleet of 99 hosts in four clusters, used when no ferry.yml exists.
 * Mixed CPU families (so compatibility checks have something to say), HA and non-HA VMs,
 * powered-off VMs, stale NPIV ports; see src/adapters/lab/fleet.ts for the generator.
 */
export const LAB_DEFAULT_YAML = `
timezone: UTC
lab:
  seed: 42
  latencyMs: 150
  migrationMs: 3000
clusters:
  prod-a:
    adapter: lab
    hosts: ["hyp[01-24]"]
  prod-b:
    adapter: lab
    hosts: ["hyp[25-48]"]
  prod-c:
    adapter: lab
    hosts: ["hyp[49-72]"]
  dev:
    adapter: lab
    hosts: ["hyp[73-99]"]
groups:
  operators: [alice, bob, carol, dave]
  approvers: [bob, carol]
console:
  user: alice
`;
