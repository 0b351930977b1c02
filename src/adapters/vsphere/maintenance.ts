/**
 * Ferry's record of EnterMaintenanceMode_Task runs that were left running.
 *
 * On a real vCenter the task only completes once no powered-on VM is left on the host (unless
 * DRS is fully automated and vCenter evacuates it itself). Ferry moves the VMs itself, so
 * enterMaintenance starts the task, returns while it runs (the host already refuses new
 * placements and power-ons) and keeps the task here, so every process and worker sees the host
 * as entering maintenance and none starts a second task. Kept in Redis under
 * `${prefix}:vsphere:enter-maintenance:<cluster>:<host>` when the adapter has Redis (the
 * registry gives it), else in memory (tests, the vcsim probes).
 *
 * A record is 'running' (the task may still run), 'cancelling' (exitMaintenance is cancelling
 * it: its RequestCanceled end is not a failure) or 'failed' (the task ended in error; reported by
 * describeHost and once by enterMaintenance, which then forgets it). A task that succeeded is
 * forgotten: the host's own runtime.inMaintenanceMode says the rest.
 */
import type { Redis } from 'ioredis';
import { runScript } from '../../redis-scripts.js';

export type EnterState = 'running' | 'cancelling' | 'failed';

export interface EnterRecord {
  /** Task moref value ("task-123"). */
  task: string;
  state: EnterState;
  /** ISO time the task was started. */
  startedAt: string;
  /** The vCenter fault and message of a failed task. */
  fault?: string;
  error?: string;
}

/** Records outlive any sensible drain on hold, but not for ever. */
const TTL_S = 30 * 24 * 3600;

/** Compare-and-set: change or delete the record only if it is still this task in this state. */
export class EnterTasks {
  private readonly memory = new Map<string, EnterRecord>();

  constructor(
    private readonly cluster: string,
    private readonly redis?: Redis,
    private readonly prefix = 'ferry',
  ) {}

  key(host: string): string {
    return `${this.prefix}:vsphere:enter-maintenance:${this.cluster}:${host}`;
  }

  async get(host: string): Promise<EnterRecord | undefined> {
    if (!this.redis) return this.memory.get(host);
    const raw = await this.redis.get(this.key(host));
    if (!raw) return undefined;
    try {
      return JSON.parse(raw) as EnterRecord;
    } catch {
      return undefined;
    }
  }

  async set(host: string, rec: EnterRecord): Promise<void> {
    if (!this.redis) {
      this.memory.set(host, rec);
      return;
    }
    await this.redis.set(this.key(host), JSON.stringify(rec), 'EX', TTL_S);
  }

  /** Replaces (or, with null, deletes) the record only if it is still `task` in state `from`. */
  async swap(host: string, task: string, from: EnterState, next: EnterRecord | null): Promise<boolean> {
    if (!this.redis) {
      const cur = this.memory.get(host);
      if (!cur || cur.task !== task || cur.state !== from) return false;
      if (next) this.memory.set(host, next);
      else this.memory.delete(host);
      return true;
    }
    const done = await runScript(this.redis, 'vsphere-enter-cas', [this.key(host)], [task, from, next ? JSON.stringify(next) : '', String(TTL_S)]);
    return done === 1;
  }

  async delete(host: string): Promise<void> {
    if (!this.redis) {
      this.memory.delete(host);
      return;
    }
    await this.redis.del(this.key(host));
  }
}
