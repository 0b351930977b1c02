/**
 * patch windows (seed 001 as a workflow, Cluster-Aware Updating as the model): record a window,
 * announce it exactly once at the configured offsets (src/jobs/patch/scheduler.ts), and, when
 * it is rolling, run it host by host (src/jobs/patch/rolling.ts). This module is the entry
 * point the command handlers use; src/ferry.ts wires the timer and run jobs.
 */
import type { Deps } from '../context.js';
import type { Conversation } from '../../chat/conversation.js';
import { durationMs, parseDuration } from '../../core/duration.js';
import { compressNames } from '../../core/selectors.js';
import { announcementSchedule, parseWindowTime, validateWindow, type Announcement } from '../../core/windows.js';
import { audit } from '../../audit/audit.js';
import { refusal, type Refusal } from '../../core/refusal.js';
import { WindowStore, type PatchWindow } from '../patch/store.js';
import { scheduleOptions, scheduleWindow, windowsChanged } from '../patch/scheduler.js';

export { cancelWindow, processWindow, scanWindows, ensureScan } from '../patch/scheduler.js';
export { WindowStore, type PatchWindow } from '../patch/store.js';

/** Windows are for maintenance planned within the year; anything further is most likely a typo. */
const MAX_AHEAD_MS = 366 * 86_400_000;

export interface CreateWindowInput {
  hosts: string[];
  /** The start as typed ("2026-12-05 22:00 Europe/Amsterdam"). */
  at: string;
  /** As typed ("4h"); absent means patchWindows.defaultDuration (capped at maxDuration). */
  duration?: string;
  note?: string;
  rolling: boolean;
  user: string;
  conv: Conversation;
}

export type CreateWindowResult =
  | { refused: false; window: PatchWindow; announcements: Announcement[]; notApplicable: Announcement[]; defaultZoneUsed: boolean; defaultDurationUsed: boolean }
  | Refusal;

/**
 * Why a rolling run over these hosts cannot be offered with this configuration, or null: a
 * command patch hook needs every host's adapter to run commands (capabilities.hostCommands).
 */
export function rollingUnsupported(deps: Deps, hosts: readonly string[]): Refusal | null {
  const hook = deps.rt.config.patchWindows.hook;
  if (!('command' in hook)) return null;
  const cannot = new Map<string, string[]>();
  for (const host of hosts) {
    const adapter = deps.rt.adapters.forHost(host);
    if (!adapter.capabilities.hostCommands) cannot.set(adapter.kind, [...(cannot.get(adapter.kind) ?? []), host]);
  }
  if (!cannot.size) return null;
  const names = [...cannot.values()].flat();
  const kinds = [...cannot.keys()];
  const why = kinds.includes('vsphere') ? ' (ESXi hosts are patched through vSphere Lifecycle Manager)' : '';
  return refusal(`The patch hook is a command, which the ${kinds.join(' and ')} adapter${kinds.length > 1 ? 's' : ''} of ${compressNames(names)} cannot run${why}; use a manual hook (patchWindows.hook: {manual: true}) or leave ${names.length > 1 ? 'these hosts' : 'this host'} out of the rolling window.`, 'hook-unsupported');
}

/** Validate and record a window, then schedule its wake-ups. Nothing is recorded on refusal. */
export async function createWindow(deps: Deps, input: CreateWindowInput): Promise<CreateWindowResult> {
  const { rt } = deps;
  const pw = rt.config.patchWindows;
  const now = rt.clock.now();
  if (input.rolling) {
    const why = rollingUnsupported(deps, input.hosts);
    if (why) return why;
  }
  const time = parseWindowTime(input.at, { now, defaultZone: rt.config.timezone, maxAheadMs: MAX_AHEAD_MS });
  if (!time.ok) return refusal(time.error, 'bad-time');
  const maxMs = durationMs(pw.maxDuration);
  let duration: number;
  if (input.duration !== undefined) {
    const d = parseDuration(input.duration);
    if (d === null) return refusal(`"${input.duration}" is not a duration; use 4h, 90m or 1h30m.`, 'bad-duration');
    duration = d;
  } else duration = Math.min(durationMs(pw.defaultDuration), maxMs);

  const store = new WindowStore(rt);
  const made = await store.withLock(async (): Promise<CreateWindowResult> => {
    const existing = await store.list({ sinceMs: now });
    const check = validateWindow({ hosts: input.hosts, startMs: time.startMs, durationMs: duration, note: input.note, existing, maxDurationMs: maxMs, now, zone: time.zone });
    if (!check.ok) return refusal(check.error, 'invalid-window');
    const w: PatchWindow = {
      id: await store.nextId(),
      revision: 1,
      hosts: input.hosts,
      startMs: time.startMs,
      durationMs: duration,
      zone: time.zone,
      note: input.note,
      status: 'scheduled',
      createdAtMs: now,
      rolling: input.rolling || undefined,
      createdBy: input.user,
      conv: input.conv,
    };
    await store.save(w);
    const schedule = announcementSchedule(w, scheduleOptions(deps));
    return { refused: false, window: w, announcements: schedule.announcements, notApplicable: schedule.notApplicable, defaultZoneUsed: time.defaultZoneUsed, defaultDurationUsed: input.duration === undefined };
  });
  if (made.refused) return made;
  await scheduleWindow(deps, made.window);
  await audit(rt, {
    actor: input.user,
    kind: 'decision',
    action: `patch window ${made.window.id}${input.rolling ? ' (rolling)' : ''} recorded`,
    targets: input.hosts,
    outcome: 'ok',
  }).catch(() => undefined);
  windowsChanged(deps);
  return made;
}
