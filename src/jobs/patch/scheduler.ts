/**
 * Patch-window announcements, exactly once across processes and restarts.
 *
 * Wake-ups: each announcement gets a BullMQ delayed job on the 'timers' queue with a
 * deterministic jobId (window, revision, label), so re-scheduling adds nothing twice; a job
 * scheduler ('patch-scan', every patchWindows.scanInterval) re-checks every live window, which
 * catches anything a lost job or a long outage left behind. Neither decides what to post: both
 * call processWindow(), which asks the pure core (dueAnnouncements) what is due at the clock's
 * now, so a late wake-up, a duplicate wake-up and a wake-up for an old revision or a cancelled
 * window are all harmless.
 *
 * Exactly once: before posting, the announcement's field in pw:<id>:ann is claimed with HSETNX
 * ('posting'); only the winner posts. Each destination (the announcements channel, the
 * conversation that created the window) has its own field, claimed before its post and marked
 * 'posted' after. A process that dies between claim and post leaves a 'posting' claim; once it
 * is older than POSTING_STALE_MS another process takes it over (compare-and-set) and finishes:
 * destinations already 'posted' are left alone, never-started ones are posted normally, and a
 * destination caught mid-post (the only case where Slack may or may not have it) is posted
 * again with a sentence saying it may repeat. That is the one place a duplicate can appear,
 * and it says so rather than risk silence.
 */
import type { Job } from 'bullmq';
import type { Deps } from '../context.js';
import type { Workflow } from '../wiring.js';
import { durationMs } from '../../core/duration.js';
import {
  announcementSchedule,
  dueAnnouncements,
  formatInstant,
  formatWindowTimes,
  untilText,
  windowEnd,
  type Announcement,
  type ScheduleOptions,
} from '../../core/windows.js';
import { compressNames } from '../../core/selectors.js';
import { context, escapeText, message, section, who, type Message } from '../../chat/messages.js';
import type { Conversation } from '../../chat/conversation.js';
import { audit } from '../../audit/audit.js';
import { refusal, type Refusal } from '../../core/refusal.js';
import { WindowStore, type AnnouncementState, type PatchWindow } from './store.js';

/** A claim older than this belongs to a process that died between claim and post. */
export const POSTING_STALE_MS = 2 * 60_000;

/** Tell the wiring's listeners (App Home refresh) that windows changed; their failures are their own business. */
export function windowsChanged(deps: Deps): void {
  for (const fn of deps.wiring.windowsChanged) {
    try {
      fn(deps);
    } catch {
      // a listener's failure never stops the scheduler
    }
  }
}

export function scheduleOptions(deps: Deps): ScheduleOptions {
  const pw = deps.rt.config.patchWindows;
  return { offsetsMs: pw.announceOffsets.map((o) => durationMs(o)), announceEnd: pw.announceEnd };
}

const jobSafe = (s: string) => s.replace(/[^A-Za-z0-9_.-]/g, '_');

/** Delayed wake-ups for a window's announcements (and its start, for rolling runs). Idempotent. */
export async function scheduleWindow(deps: Deps, w: PatchWindow): Promise<void> {
  const now = deps.rt.clock.now();
  const { announcements } = announcementSchedule(w, scheduleOptions(deps));
  const wakeups = announcements.map((a) => ({ id: `pwa-${jobSafe(a.key)}`, at: a.atMs }));
  wakeups.push({ id: `pws-${w.id}-${w.revision}`, at: w.startMs }, { id: `pwe-${w.id}-${w.revision}`, at: windowEnd(w) });
  await Promise.all(
    wakeups.map((wk) =>
      deps.queues.timers.add(
        'patch-window',
        { windowId: w.id },
        { jobId: wk.id, delay: Math.max(0, wk.at - now), removeOnComplete: { age: 7 * 86_400 }, removeOnFail: 1000, attempts: 3, backoff: { type: 'exponential', delay: 2000 } },
      ),
    ),
  );
  await ensureScan(deps);
}

/** Drop a window's pending wake-ups (best effort: a wake-up that fires anyway finds nothing to do). */
export async function unscheduleWindow(deps: Deps, w: PatchWindow): Promise<void> {
  const { announcements } = announcementSchedule(w, scheduleOptions(deps));
  const ids = [...announcements.map((a) => `pwa-${jobSafe(a.key)}`), `pws-${w.id}-${w.revision}`, `pwe-${w.id}-${w.revision}`];
  await Promise.allSettled(ids.map((id) => deps.queues.timers.remove(id)));
}

/** The periodic catch-up scan; upserting the same scheduler id from many processes is a no-op. */
export async function ensureScan(deps: Deps): Promise<void> {
  const every = Math.max(5000, durationMs(deps.rt.config.patchWindows.scanInterval));
  await deps.queues.timers.upsertJobScheduler('patch-scan', { every }, { name: 'patch-scan', data: {}, opts: { removeOnComplete: 50, removeOnFail: 50 } });
}

// ---------------------------------------------------------------------------------------
// What an announcement says

export function windowLine(w: PatchWindow): string {
  return `${compressNames(w.hosts)} · ${formatWindowTimes(w.startMs, windowEnd(w), w.zone)}`;
}

export function announcementMessage(w: PatchWindow, a: Announcement, now: number, opts: { late: boolean; maybeRepeat?: boolean }): Message {
  const note = w.note ? `\nNote: ${escapeText(w.note)}` : '';
  const rolling = w.rolling ? ' Rolling run: one host at a time, drain → patch → restore.' : '';
  let head: string;
  if (a.kind === 'before') head = `Patch window ${w.id} starts ${untilText(now, w.startMs)}.`;
  else if (a.kind === 'start') head = `Patch window ${w.id} has started.${rolling}`;
  else head = `Patch window ${w.id} has ended.`;
  const blocks = [section(`:wrench: *${head}*\n${windowLine(w)}${note}`)];
  const notes: string[] = [`window ${w.id} · ${a.label} announcement`];
  if (opts.late) notes.push(`posted late: Ferry was unavailable at ${formatInstant(a.atMs, w.zone)}`);
  if (opts.maybeRepeat) notes.push('Ferry stopped while posting this; it may repeat an earlier message');
  blocks.push(context(notes.join(' · ')));
  return message(`${head} ${windowLine(w)}`, ...blocks);
}

// ---------------------------------------------------------------------------------------
// Destinations

interface Destination {
  id: 'channel' | 'origin';
  conv: Conversation;
}

/** The announcements channel (Slack, when configured) and the conversation that made the window. */
export function destinations(deps: Deps, w: PatchWindow): Destination[] {
  const out: Destination[] = [];
  const channel = deps.rt.config.channels.announcements;
  if (channel) out.push({ id: 'channel', conv: { surface: 'slack', channel, user: w.createdBy ?? 'ferry' } });
  // Made in the announcements channel itself: the channel post is enough.
  const sameChannel = channel && w.conv.surface === 'slack' && w.conv.channel === channel;
  if (!sameChannel) out.push({ id: 'origin', conv: w.conv });
  return out;
}

/** Post to every destination, each claimed on its own field (see the header). */
export async function postOnce(deps: Deps, store: WindowStore, w: PatchWindow, key: string, build: (maybeRepeat: boolean) => Message): Promise<number> {
  let posted = 0;
  const processId = `${process.pid}`;
  for (const dest of destinations(deps, w)) {
    const field = `${key}@${dest.id}`;
    const now = deps.rt.clock.now();
    const claim: AnnouncementState = { state: 'posting', by: processId, atMs: now, token: Math.random().toString(36).slice(2) };
    let maybeRepeat = false;
    if (!(await store.claim(w.id, field, claim))) {
      const cur = (await store.announcementStates(w.id))[field];
      // Someone else's live claim, or already posted: not ours.
      if (!cur || cur.state !== 'posting' || now - cur.atMs < POSTING_STALE_MS) continue;
      if (!(await store.replaceIf(w.id, field, cur, claim))) continue;
      maybeRepeat = true;
    }
    await deps.outbox.post(dest.conv, build(maybeRepeat));
    await store.setState(w.id, field, { state: 'posted', atMs: deps.rt.clock.now(), late: false, retried: maybeRepeat || undefined });
    posted++;
  }
  return posted;
}

// ---------------------------------------------------------------------------------------
// The one place announcements are decided

export interface ProcessResult {
  posted: string[];
  skipped: { key: string; reason: string }[];
}

/** Do whatever is due for one window at the clock's now. Safe to call from any process, any time. */
export async function processWindow(deps: Deps, windowId: string): Promise<ProcessResult> {
  const store = new WindowStore(deps.rt);
  const result: ProcessResult = { posted: [], skipped: [] };
  let w = await store.get(windowId);
  if (!w) return result;
  const now = deps.rt.clock.now();
  const pw = deps.rt.config.patchWindows;
  const schedule = announcementSchedule(w, scheduleOptions(deps));
  const states = await store.announcementStates(w.id);

  // A stale 'posting' claim on an announcement: finish it (postOnce handles each destination).
  for (const a of schedule.announcements) {
    const st = states[a.key];
    if (st?.state === 'posting' && now - st.atMs >= POSTING_STALE_MS && w.status !== 'cancelled') {
      const taken: AnnouncementState = { state: 'posting', by: `${process.pid}`, atMs: now, token: Math.random().toString(36).slice(2) };
      if (await store.replaceIf(w.id, a.key, st, taken)) {
        await postOnce(deps, store, w, a.key, (maybeRepeat) => announcementMessage(w!, a, now, { late: true, maybeRepeat }));
        await store.setState(w.id, a.key, { state: 'posted', atMs: deps.rt.clock.now(), late: true, retried: true });
        result.posted.push(a.key);
      }
    }
  }

  const sentKeys = Object.keys(states).filter((k) => !k.includes('@'));
  const due = dueAnnouncements(w, schedule, { now, missedPolicy: pw.missed, sentKeys, graceMs: durationMs(pw.grace) });
  for (const s of due.skip) {
    if (await store.claim(w.id, s.announcement.key, { state: 'skipped', atMs: now, reason: s.reason })) {
      result.skipped.push({ key: s.announcement.key, reason: s.reason });
      deps.rt.log.info({ window: w.id, key: s.announcement.key, reason: s.reason }, 'patch-window announcement skipped');
    }
  }
  for (const p of due.post) {
    const claim: AnnouncementState = { state: 'posting', by: `${process.pid}`, atMs: now, token: Math.random().toString(36).slice(2) };
    if (!(await store.claim(w.id, p.announcement.key, claim))) continue;
    const win = w;
    await postOnce(deps, store, win, p.announcement.key, (maybeRepeat) => announcementMessage(win, p.announcement, now, { late: p.late, maybeRepeat }));
    await store.setState(w.id, p.announcement.key, { state: 'posted', atMs: deps.rt.clock.now(), late: p.late });
    result.posted.push(p.announcement.key);
    await audit(deps.rt, {
      actor: 'ferry',
      kind: 'decision',
      action: `patch window ${w.id} ${p.announcement.label} announcement${p.late ? ' (late)' : ''}`,
      targets: w.hosts,
      outcome: 'ok',
    }).catch(() => undefined);
  }

  // Status follows the clock; the revision does not change (announcements stay valid).
  if (w.status === 'scheduled' && now >= w.startMs && now < windowEnd(w)) {
    w = (await store.update(w.id, { revision: w.revision, status: 'scheduled' }, { status: 'running' })) ?? (await store.get(w.id)) ?? w;
    windowsChanged(deps);
  }
  if ((w.status === 'scheduled' || w.status === 'running') && now >= windowEnd(w)) {
    w = (await store.update(w.id, { revision: w.revision, status: w.status }, { status: 'completed' })) ?? (await store.get(w.id)) ?? w;
    windowsChanged(deps);
  }
  const onRollingStart = deps.wiring.rollingStart;
  if (w.rolling && w.status === 'running' && now < windowEnd(w) && onRollingStart) {
    // Only one process starts the run, whatever the number of wake-ups.
    const first = await deps.rt.redis.set(deps.rt.key('pw', w.id, 'run-claim'), `${process.pid}`, 'NX');
    if (first) await onRollingStart(deps, w);
  }
  if (result.posted.length) windowsChanged(deps);
  return result;
}

/** Every window that may still have something to do. */
export async function scanWindows(deps: Deps): Promise<ProcessResult> {
  const store = new WindowStore(deps.rt);
  const now = deps.rt.clock.now();
  // A day's slack after the end: an 'end' missed during an outage is still recorded (late or skipped).
  const windows = await store.list({ sinceMs: now - 86_400_000 });
  const total: ProcessResult = { posted: [], skipped: [] };
  for (const w of windows) {
    try {
      const r = await processWindow(deps, w.id);
      total.posted.push(...r.posted);
      total.skipped.push(...r.skipped);
    } catch (e) {
      deps.rt.log.error({ window: w.id, err: e }, 'patch window check failed');
    }
  }
  for (const hook of deps.wiring.scan) await hook(deps).catch((e: unknown) => deps.rt.log.error({ err: e }, 'patch scan hook failed'));
  return total;
}

/** Cancel: no further announcements, pending wake-ups dropped, a running rolling run asked to stop. */
export async function cancelWindow(deps: Deps, id: string, user: string): Promise<{ refused: false; window: PatchWindow } | Refusal> {
  const store = new WindowStore(deps.rt);
  const w = await store.get(id);
  if (!w) return refusal(`There is no patch window ${id}; "patch windows" lists them.`, 'not-found');
  if (w.status === 'cancelled') return refusal(`Patch window ${id} is already cancelled.`, 'cancelled');
  if (w.status === 'completed') return refusal(`Patch window ${id} has already ended; nothing to cancel.`, 'finished');
  const now = deps.rt.clock.now();
  const done = await store.update(id, { revision: w.revision, status: w.status }, { status: 'cancelled', cancelledBy: user, cancelledAtMs: now });
  if (!done) return refusal(`Patch window ${id} changed while cancelling; look at "patch windows" and try again.`, 'changed');
  await unscheduleWindow(deps, done);
  if (done.runOpId) await deps.ops.requestCancel(done.runOpId, user);
  await audit(deps.rt, { actor: user, kind: 'decision', action: `cancel patch window ${id}`, targets: done.hosts, outcome: 'ok' }).catch(() => undefined);
  // Say so where the announcements went; claimed like an announcement, so said once.
  if (await store.claim(id, 'cancel', { state: 'posting', by: `${process.pid}`, atMs: now, token: 'cancel' })) {
    const text = `Patch window ${id} is cancelled by ${who(user)}.`;
    await postOnce(deps, store, done, 'cancel', () => message(text, section(`:no_entry_sign: *${text}*\n${windowLine(done)}${done.note ? `\nNote: ${escapeText(done.note)}` : ''}`)));
    await store.setState(id, 'cancel', { state: 'posted', atMs: deps.rt.clock.now(), late: false });
  }
  windowsChanged(deps);
  return { refused: false, window: done };
}

export const patchWindowsWorkflow: Workflow = {
  name: 'patch-windows',
  jobs: {
    'patch-window': { queue: 'timers', handler: async (deps, job: Job) => processWindow(deps, String((job.data as { windowId: string }).windowId)) },
    'patch-scan': { queue: 'timers', handler: async (deps) => scanWindows(deps) },
  },
  // The catch-up scan must exist even before the first window is recorded on a fresh deployment.
  startup: [(deps) => ensureScan(deps)],
};
