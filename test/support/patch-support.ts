/** Shared by the rolling-run tests: lab hosts a drain may take, and where their VMs are. */
import type { Harness } from './harness.js';

/** The first `n` lab hosts of prod-a with running VMs whose drain dry-run succeeds (the workflow itself decides). */
export async function drainableHosts(h: Harness, n: number): Promise<string[]> {
  const hosts: string[] = [];
  for (let i = 1; i <= 24 && hosts.length < n; i++) {
    const host = `hyp${String(i).padStart(2, '0')}`;
    const vms = await h.rt.adapters.forHost(host).listVms(host);
    if (!vms.some((v) => v.power === 'running')) continue;
    await h.run(`drain ${host} dry-run`);
    const op = await h.waitForOp();
    if (op.status === 'succeeded') hosts.push(host);
  }
  return hosts;
}

/** host -> names of the VMs on it, sorted. */
export async function vmHomes(h: Harness, hosts: string[]): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const host of hosts) out[host] = (await h.rt.adapters.forHost(host).listVms(host)).map((v) => v.name).sort();
  return out;
}
