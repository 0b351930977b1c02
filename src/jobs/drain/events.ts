/**
 * What a drain run reports as it goes (kubectl drain's shape: the runner acts and emits these;
 * narration.ts turns each into the thread's sentence; card.ts draws the card from state).
 * Each event carries the figures its sentence needs, checked by the runner against real state.
 */
import type { HostLock } from './locks.js';

export type DrainEvent =
  /** A re-run after its worker stopped (stalled-job recovery). */
  | { type: 'resumed'; opId: number; moved: number; total: number }
  /** Another operation holds the host when the run starts. */
  | { type: 'locked-out'; opId: number; held: HostLock }
  /** The cluster gate refused entering maintenance (limit passed, a target gone). */
  | { type: 'gate-refused'; opId: number; host: string; why: string }
  /** The host still has another drain's ledger, never restored. */
  | { type: 'open-ledger'; host: string; ledgerOpId: number }
  | { type: 'maintenance-entered'; host: string; entering: boolean; notes: string[]; moves: number; concurrency: number }
  | { type: 'lock-lost'; opId: number; host: string; lost: HostLock; moved: number; total: number }
  | { type: 'cancelled'; opId: number; host: string; by: string; moved: number; total: number }
  | { type: 'vm-failed'; vm: string; target: string; attempts: number; error: string }
  | { type: 'rollback-started'; opId: number; host: string; back: number }
  /** Rolling back, the host could not leave maintenance: nothing moves back. */
  | { type: 'rollback-stuck'; host: string; error: string }
  | { type: 'rolled-back'; opId: number; host: string; returned: number; back: number; problems: string[] }
  | { type: 'held'; opId: number; host: string; failed: string[]; moved: number; total: number; left: number }
  | { type: 'save-failed'; vm: string; host: string; error: string }
  | { type: 'retrying'; vms: string[] }
  | { type: 'vm-skipped'; vm: string; host: string }
  /** Cancelled or expired while waiting for Start or a decision on hold. */
  | { type: 'stopped-waiting'; opId: number; title: string; host: string; why: string; held: boolean; moved: number }
  | { type: 'finished'; opId: number; host: string; tally: DrainTally; status: string; durationMs: number; rolledBack?: { failed: string[] } };

/** The run's end as the hosts and the per-VM states say. */
export interface DrainTally {
  moved: { vm: string; target: string; durationMs: number }[];
  returned: { vm: string; from: string }[];
  /** Running non-HA VMs to save in place (save-non-ha), and which of them were saved. */
  toSave: number;
  saved: string[];
  skipped: [vm: string, why: string][];
  failed: [vm: string, error: string][];
}
