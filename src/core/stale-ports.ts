/**
 * Seed 000's Get-FCNPIVInactivePort as a pure function: the virtual ports on a host's physical
 * HBAs, minus the WWPNs of running VMs' virtual FC endpoints, minus the physical HBAs' own
 * WWPNs, are stale ("lingering") ports.
 */
import type { NpivInventory, VirtualPort, Wwn } from '../adapters/types.js';

export interface StalePort extends VirtualPort {
  /** The VM (anywhere in the fleet) whose address set includes this WWPN, if known: explains where it came from. */
  formerOwner?: string;
}

export function findStalePorts(inv: NpivInventory): StalePort[] {
  const physical = new Set(inv.hbas.map((h) => h.wwpn));
  // Msvm_FcEndpoint lists physical ports too; the seed subtracts them first.
  const inUse = new Set(inv.endpointWwpns.filter((w) => !physical.has(w)));
  return inv.virtualPorts.filter((p) => !inUse.has(p.wwpn) && !physical.has(p.wwpn)).map((p) => ({ ...p }));
}

/** Index WWPN -> VM name from VM facts across the fleet, to say whose port a stale one was. */
export function ownerIndex(vms: { name: string; vfc: { wwpns: Wwn[] }[] }[]): Map<Wwn, string> {
  const idx = new Map<Wwn, string>();
  for (const vm of vms) for (const a of vm.vfc) for (const w of a.wwpns) idx.set(w, vm.name);
  return idx;
}
