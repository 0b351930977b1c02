/**
 * Patch windows, the pure core: parsing start times, validating windows, the announcement
 * schedule, which announcements are due, how times are shown, and the rolling run's next step.
 * No I/O and no clock: every function that needs "now" takes it as epoch ms, so the scheduler
 * (BullMQ, Redis) can be tested with a controllable clock and these rules with plain tables.
 *
 * Accepted start times (one small, unambiguous set; everything else is refused):
 *   2026-12-05 22:00 Europe/Amsterdam   date, 24-hour time, IANA zone (case-insensitive)
 *   2026-12-05T22:00                    "T" may replace the space
 *   2026-12-05 22:00                    the configured default zone
 *   2026-12-05T22:00Z / … 22:00 UTC     UTC ("Z", "UTC", "GMT")
 *   2026-12-05 22:00 +01:00             a fixed offset (also +0100, +1, UTC+1); shown as UTC+1
 *   2027-10-31 02:30 Europe/Amsterdam +01:00
 *                                       zone plus offset: the only way through a DST fold
 *   today 22:00 [zone] / tomorrow 22:00 [zone]   calendar days in that zone
 *   22:00 [zone]                        the next occurrence: today if still ahead, else tomorrow
 * Refused: times in the past; unknown zones (with "did you mean"); abbreviations such as
 * EST or CET (ICU maps EST to America/Panama, which has no DST: a trap); a local time that
 * does not exist (DST gap); a local time that happens twice (DST fold) unless an offset says
 * which. We refuse the fold rather than pick one: an hour's difference in a maintenance
 * window is not something to guess, and the message spells out both answers.
 */
import { DateTime } from 'luxon';
import { formatDuration } from './duration.js';
import { suggest } from './suggest.js';

const MINUTE = 60_000;
const DAY = 86_400_000;

// ---------------------------------------------------------------------------------------
// Zones

let zoneList: readonly string[] | undefined;
/** IANA names this runtime knows, plus UTC (Intl.supportedValuesOf leaves UTC out). */
export function knownZones(): readonly string[] {
  zoneList ??= ['UTC', ...Intl.supportedValuesOf('timeZone')];
  return zoneList;
}

// Abbreviations people type; Intl accepts some of them with surprising meanings.
const ABBREVIATIONS: Record<string, string> = {
  EST: 'America/New_York', EDT: 'America/New_York', CST: 'America/Chicago', CDT: 'America/Chicago',
  MST: 'America/Denver', MDT: 'America/Denver', PST: 'America/Los_Angeles', PDT: 'America/Los_Angeles',
  CET: 'Europe/Amsterdam', CEST: 'Europe/Amsterdam', MET: 'Europe/Amsterdam', MEZ: 'Europe/Berlin',
  WET: 'Europe/Lisbon', WEST: 'Europe/Lisbon', EET: 'Europe/Helsinki', EEST: 'Europe/Helsinki',
  BST: 'Europe/London', IST: 'Asia/Kolkata', JST: 'Asia/Tokyo', AEST: 'Australia/Sydney', AEDT: 'Australia/Sydney',
};

export type ZoneResult = { ok: true; zone: string } | { ok: false; error: string };

/** An IANA zone name (canonical spelling), or UTC; one sentence when it is not one. */
export function resolveZone(text: string): ZoneResult {
  const t = text.trim();
  const upper = t.toUpperCase();
  if (upper === 'UTC' || upper === 'Z' || upper === 'GMT' || upper === 'ETC/UTC' || upper === 'ETC/GMT') return { ok: true, zone: 'UTC' };
  const exact = knownZones().find((z) => z.toLowerCase() === t.toLowerCase());
  if (exact) return { ok: true, zone: exact };
  if (ABBREVIATIONS[upper]) {
    return { ok: false, error: `${t} is an abbreviation, not a time zone; use a zone name such as ${ABBREVIATIONS[upper]}.` };
  }
  // Names the runtime's list lacks but Intl accepts: links (US/Eastern) and names newer than this
  // ICU's canonical ones (Node 20 lists Asia/Calcutta, not Asia/Kolkata). Kept as typed, so the zone
  // is shown back as given; only with a slash, since bare words are abbreviations.
  if (t.includes('/')) {
    try {
      new Intl.DateTimeFormat('en', { timeZone: t });
      return { ok: true, zone: t };
    } catch {
      // fall through to the suggestion
    }
  }
  const city = t.replace(/ /g, '_').toLowerCase();
  const byCity = t.includes('/') ? undefined : knownZones().find((z) => z.toLowerCase().endsWith(`/${city}`));
  const guess = byCity ?? suggest(t, knownZones());
  return {
    ok: false,
    error: guess
      ? `${t} is not a time zone; did you mean ${guess}?`
      : `${t} is not a time zone; use a zone name such as Europe/Amsterdam or UTC.`,
  };
}

/** Offset of `zone` at instant `ms`, in minutes east of UTC. */
function offsetAt(zone: string, ms: number): number {
  return DateTime.fromMillis(ms, { zone }).offset;
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

/** +01:00 / -05:00 / +05:30 */
export function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? '-' : '+';
  const a = Math.abs(minutes);
  return `${sign}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

/** luxon's fixed-offset zone name: UTC+1, UTC-5, UTC+5:30 (UTC for zero). */
function fixedZone(minutes: number): string {
  if (minutes === 0) return 'UTC';
  const sign = minutes < 0 ? '-' : '+';
  const a = Math.abs(minutes);
  return `UTC${sign}${Math.floor(a / 60)}${a % 60 ? `:${pad(a % 60)}` : ''}`;
}

// "Wall" times are local date-times encoded as if they were UTC: Date.UTC(y, m-1, d, h, mi).
function wallText(wall: number): string {
  const d = new Date(wall);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}
function wallClock(wall: number): string {
  return wallText(wall).slice(11);
}

/**
 * Every instant whose local time in `zone` is `wall`: none in a DST gap, two in a fold.
 * Each offset the zone uses within two days is tried; an instant counts when the zone really
 * has that offset at that instant.
 */
function instantsFor(zone: string, wall: number): number[] {
  const offsets = new Set<number>();
  for (const d of [-2, -1, 0, 1, 2]) offsets.add(offsetAt(zone, wall + d * DAY));
  const out: number[] = [];
  for (const o of offsets) {
    const t = wall - o * MINUTE;
    if (offsetAt(zone, t) === o) out.push(t);
  }
  return out.sort((a, b) => a - b);
}

/** The offset change nearest `wall` (binary search to the second): instant and offsets before/after. */
function transitionNear(zone: string, wall: number): { at: number; before: number; after: number } {
  let lo = wall - DAY;
  let hi = wall + DAY;
  const before = offsetAt(zone, lo);
  const after = offsetAt(zone, hi);
  while (hi - lo > 1000) {
    const mid = Math.floor((lo + hi) / 2);
    if (offsetAt(zone, mid) === before) lo = mid;
    else hi = mid;
  }
  return { at: hi, before, after };
}

// ---------------------------------------------------------------------------------------
// Parsing start times

export interface ParseWindowTimeOptions {
  /** Zone for times written without one (config `timezone`). */
  defaultZone: string;
  /** Epoch ms. */
  now: number;
  /** Optional guard against typos like 2062: refuse starts further ahead than this. */
  maxAheadMs?: number;
}

export type ParsedWindowTime =
  | {
      ok: true;
      startMs: number;
      /** IANA name, UTC, or a fixed offset such as UTC+1: the zone to show times back in. */
      zone: string;
      /** Normalised, e.g. "2026-12-05 22:00 Europe/Amsterdam" (with the offset after a fold). */
      text: string;
      /** True when the zone came from defaultZone (worth saying in the reply). */
      defaultZoneUsed: boolean;
    }
  | { ok: false; error: string };

const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:\s+|T)(\d{1,2}):(\d{2})(.*)$/i;
const RELATIVE = /^(today|tomorrow)\s+(\d{1,2}):(\d{2})(.*)$/i;
const TIME_ONLY = /^(\d{1,2}):(\d{2})(.*)$/;
const OFFSET = /^(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?$/i;
const FORMS = 'write it like 2026-12-05 22:00 Europe/Amsterdam, tomorrow 22:00, or 22:00';

interface Suffix {
  zoneText?: string;
  offsetMin?: number;
  offsetText?: string;
}

/** What follows the clock time: a zone, an offset, both, or nothing. */
function parseSuffix(rest: string): { ok: true; value: Suffix } | { ok: false; error: string } {
  // "22:00Z" and "22:00+01:00" come attached; split them off.
  const spaced = rest.replace(/^(z)(?=\s|$)/i, ' $1').replace(/^([+-])/, ' $1');
  const tokens = spaced.trim().split(/\s+/).filter(Boolean);
  const value: Suffix = {};
  const zoneWords: string[] = [];
  for (const tok of tokens) {
    const m = OFFSET.exec(tok);
    if (m) {
      if (value.offsetMin !== undefined) return { ok: false, error: `Give one offset, not both ${value.offsetText} and ${tok}.` };
      const h = Number(m[2]);
      const mi = Number(m[3] ?? '0');
      if (h > 14 || mi > 59) return { ok: false, error: `${tok} is not a UTC offset; offsets run from -12:00 to +14:00.` };
      value.offsetMin = (m[1] === '-' ? -1 : 1) * (h * 60 + mi);
      value.offsetText = tok;
    } else {
      zoneWords.push(tok);
    }
  }
  // Kept as typed (spaces and all) so "America/New York" gets "did you mean America/New_York?".
  if (zoneWords.length) value.zoneText = zoneWords.join(' ');
  return { ok: true, value };
}

function validClock(h: number, mi: number): boolean {
  return h >= 0 && h <= 23 && mi >= 0 && mi <= 59;
}

/** Parse a window's start; see the header for the accepted forms. */
export function parseWindowTime(input: string, opts: ParseWindowTimeOptions): ParsedWindowTime {
  const text = input.trim().replace(/\s+/g, ' ');
  if (!text) return { ok: false, error: `A patch window needs a start time; ${FORMS}.` };

  let dateFields: [number, number, number] | 'today' | 'tomorrow' | 'next';
  let hour: number;
  let minute: number;
  let rest: string;
  let m: RegExpExecArray | null;
  if ((m = DATE_TIME.exec(text))) {
    dateFields = [Number(m[1]), Number(m[2]), Number(m[3])];
    [hour, minute, rest] = [Number(m[4]), Number(m[5]), m[6]!];
  } else if ((m = RELATIVE.exec(text))) {
    dateFields = m[1]!.toLowerCase() as 'today' | 'tomorrow';
    [hour, minute, rest] = [Number(m[2]), Number(m[3]), m[4]!];
  } else if ((m = TIME_ONLY.exec(text))) {
    dateFields = 'next';
    [hour, minute, rest] = [Number(m[1]), Number(m[2]), m[3]!];
  } else {
    return { ok: false, error: `"${text}" is not a time I understand; ${FORMS}.` };
  }
  if (!validClock(hour, minute)) {
    return { ok: false, error: `${hour}:${pad(minute)} is not a time of day; use the 24-hour clock, 00:00 to 23:59.` };
  }
  if (rest && !/^(\s|z|[+-])/i.test(rest)) return { ok: false, error: `"${text}" is not a time I understand; ${FORMS}.` };

  const suffix = parseSuffix(rest);
  if (!suffix.ok) return suffix;
  const { zoneText, offsetMin, offsetText } = suffix.value;

  // The zone that defines the local time: given, else a bare offset's fixed zone, else the default.
  let zone: string;
  let defaultZoneUsed = false;
  if (zoneText !== undefined) {
    const z = resolveZone(zoneText);
    if (!z.ok) return z;
    zone = z.zone;
  } else if (offsetMin !== undefined) {
    zone = fixedZone(offsetMin);
  } else {
    const z = resolveZone(opts.defaultZone);
    if (!z.ok) return { ok: false, error: `The configured default zone is unusable: ${z.error}` };
    zone = z.zone;
    defaultZoneUsed = true;
  }

  // Resolve the calendar date (relative forms are days in that zone, not in UTC).
  let wall: number;
  if (Array.isArray(dateFields)) {
    const [y, mo, d] = dateFields;
    wall = Date.UTC(y, mo - 1, d, hour, minute);
    const check = new Date(wall);
    if (check.getUTCMonth() !== mo - 1 || check.getUTCDate() !== d) {
      return { ok: false, error: `${y}-${pad(mo)}-${pad(d)} is not a date.` };
    }
  } else {
    const today = DateTime.fromMillis(opts.now, { zone });
    const dayWall = (days: number): number => {
      const d = today.plus({ days });
      return Date.UTC(d.year, d.month - 1, d.day, hour, minute);
    };
    wall = dayWall(dateFields === 'tomorrow' ? 1 : 0);
    // Next occurrence: judge "still ahead" with the offset in force around then (any, if a gap).
    if (dateFields === 'next' && wall - offsetAt(zone, wall) * MINUTE <= opts.now) wall = dayWall(1);
  }

  const local = `${wallText(wall)} ${zone}`;
  const candidates = instantsFor(zone, wall);
  if (candidates.length === 0) {
    const tr = transitionNear(zone, wall);
    const jump = (tr.after - tr.before) * MINUTE;
    const show = (w: number): string => (wallText(w).slice(0, 10) === wallText(wall).slice(0, 10) ? wallClock(w) : wallText(w));
    return {
      ok: false,
      error:
        `${local} does not exist: clocks jump from ${wallClock(tr.at + tr.before * MINUTE)} to ` +
        `${wallClock(tr.at + tr.after * MINUTE)} that night; pick ${show(wall - jump)} or ${show(wall + jump)}.`,
    };
  }

  let startMs: number;
  let shown = local;
  if (offsetMin !== undefined && zoneText !== undefined) {
    const match = candidates.find((t) => offsetAt(zone, t) === offsetMin);
    if (match === undefined) {
      const used = candidates.map((t) => formatOffset(offsetAt(zone, t))).join(' or ');
      return { ok: false, error: `${offsetText} is not ${zone}'s offset at ${wallText(wall)}; it is ${used} then.` };
    }
    startMs = match;
    if (candidates.length > 1) shown = `${local} ${formatOffset(offsetMin)}`;
  } else if (candidates.length > 1) {
    const tr = transitionNear(zone, wall);
    const [first, second] = candidates.map((t) => formatOffset(offsetAt(zone, t)));
    return {
      ok: false,
      error:
        `${local} happens twice: clocks go back from ${wallClock(tr.at + tr.before * MINUTE)} to ` +
        `${wallClock(tr.at + tr.after * MINUTE)} that night; add the offset, "${local} ${first}" for the first ` +
        `or "${local} ${second}" for the second.`,
    };
  } else {
    startMs = candidates[0]!;
  }

  if (startMs <= opts.now) {
    return {
      ok: false,
      error: `${shown} is in the past; it is now ${wallText(opts.now + offsetAt(zone, opts.now) * MINUTE)} ${zone}.`,
    };
  }
  if (opts.maxAheadMs !== undefined && startMs - opts.now > opts.maxAheadMs) {
    return { ok: false, error: `${shown} is more than ${formatDuration(opts.maxAheadMs)} ahead; check the date.` };
  }
  return { ok: true, startMs, zone, text: shown, defaultZoneUsed };
}

// ---------------------------------------------------------------------------------------
// Windows

export type WindowStatus = 'scheduled' | 'running' | 'completed' | 'cancelled';

export interface Window {
  /** Short, human: "7" (a Redis counter), shown as "window 7". */
  id: string;
  /** Bumped whenever start, duration or hosts change; announcements of older revisions are void. */
  revision: number;
  hosts: string[];
  startMs: number;
  durationMs: number;
  /** The zone the window was given in; times are shown in it and in UTC. */
  zone: string;
  note?: string;
  status: WindowStatus;
  /** When this revision was recorded: announcements due before it never applied. */
  createdAtMs: number;
  rolling?: boolean;
  createdBy?: string;
}

export function windowEnd(w: Pick<Window, 'startMs' | 'durationMs'>): number {
  return w.startMs + w.durationMs;
}

export interface ValidateWindowInput {
  hosts: readonly string[];
  startMs: number;
  durationMs: number;
  note?: string;
  existing: readonly Window[];
  maxDurationMs: number;
  now: number;
  /** Zone to show conflicting windows in (default: each window's own zone). */
  zone?: string;
  /** When revising a window, its own id: it does not overlap itself. */
  ignoreId?: string;
}

export type WindowCheck = { ok: true; endMs: number } | { ok: false; error: string };

/** Notes are shown in every announcement; keep them inside a Slack section comfortably. */
export const MAX_NOTE_LENGTH = 500;

/** Everything about a new (or revised) window that can be checked without I/O; one sentence on failure. */
export function validateWindow(input: ValidateWindowInput): WindowCheck {
  const { hosts, startMs, durationMs, maxDurationMs, now } = input;
  if (hosts.length === 0) return { ok: false, error: 'A patch window needs at least one host.' };
  if (!Number.isFinite(durationMs) || durationMs <= 0) {
    return { ok: false, error: 'A patch window needs a duration longer than zero, e.g. "for 4h".' };
  }
  if (durationMs > maxDurationMs) {
    return {
      ok: false,
      error: `A ${formatDuration(durationMs)} window is longer than the maximum of ${formatDuration(maxDurationMs)} (patchWindows.maxDuration); split it into shorter windows.`,
    };
  }
  if (!Number.isFinite(startMs) || startMs <= now) return { ok: false, error: 'A patch window cannot start in the past.' };
  if (input.note !== undefined && input.note.length > MAX_NOTE_LENGTH) {
    return { ok: false, error: `The note is ${input.note.length} characters; keep it under ${MAX_NOTE_LENGTH}.` };
  }

  // Half-open intervals: a window ending at 22:00 and one starting at 22:00 do not overlap.
  const endMs = startMs + durationMs;
  const wanted = new Set(hosts);
  const clashes: string[] = [];
  const others = [...input.existing]
    .filter((w) => w.status !== 'cancelled' && w.id !== input.ignoreId)
    .sort((a, b) => a.startMs - b.startMs);
  for (const w of others) {
    if (!(w.startMs < endMs && startMs < windowEnd(w))) continue;
    const shared = w.hosts.filter((h) => wanted.has(h));
    if (shared.length === 0) continue;
    const who = shared.length === 1 ? `${shared[0]} is` : `${listNames(shared)} are`;
    clashes.push(`${who} already in window ${w.id} (${formatWindowTimes(w.startMs, windowEnd(w), input.zone ?? w.zone)})`);
  }
  if (clashes.length) return { ok: false, error: `${clashes.join('; ')}.` };
  return { ok: true, endMs };
}

function listNames(names: readonly string[], max = 5): string {
  const shown = names.slice(0, max);
  const more = names.length - shown.length;
  if (more > 0) return `${shown.join(', ')} and ${more} more`;
  if (shown.length === 1) return shown[0]!;
  return `${shown.slice(0, -1).join(', ')} and ${shown[shown.length - 1]}`;
}

// ---------------------------------------------------------------------------------------
// Showing times

/**
 * "Sat 5 Dec 22:00–02:00 Europe/Amsterdam (21:00–01:00 UTC)". The end carries its own date only
 * when 24h or more after the start (otherwise the wrap past midnight is unambiguous); the UTC part
 * carries a date when its start falls on another day than the local start.
 */
export function formatWindowTimes(startMs: number, endMs: number, zone: string): string {
  const fmt = (ms: number, z: string) => DateTime.fromMillis(ms, { zone: z }).setLocale('en-GB');
  const range = (z: string, withDay: boolean): string => {
    const s = fmt(startMs, z);
    const e = fmt(endMs, z);
    const head = withDay ? `${s.toFormat('ccc d LLL')} ` : '';
    const tail = endMs - startMs >= DAY ? e.toFormat('ccc d LLL HH:mm') : e.toFormat('HH:mm');
    return `${head}${s.toFormat('HH:mm')}–${tail}`;
  };
  if (zone === 'UTC') return `${range('UTC', true)} UTC`;
  const sameDay = fmt(startMs, zone).toISODate() === fmt(startMs, 'UTC').toISODate();
  return `${range(zone, true)} ${zone} (${range('UTC', !sameDay)} UTC)`;
}

/** One instant in a zone and UTC: "Sat 5 Dec 22:00 Europe/Amsterdam (21:00 UTC)". */
export function formatInstant(ms: number, zone: string): string {
  const local = DateTime.fromMillis(ms, { zone }).setLocale('en-GB');
  const utc = DateTime.fromMillis(ms, { zone: 'UTC' }).setLocale('en-GB');
  if (zone === 'UTC') return `${utc.toFormat('ccc d LLL HH:mm')} UTC`;
  const day = local.toISODate() === utc.toISODate() ? '' : `${utc.toFormat('ccc d LLL')} `;
  return `${local.toFormat('ccc d LLL HH:mm')} ${zone} (${day}${utc.toFormat('HH:mm')} UTC)`;
}

// ---------------------------------------------------------------------------------------
// Announcements

export type AnnouncementKind = 'before' | 'start' | 'end';

export interface Announcement {
  kind: AnnouncementKind;
  /** Signed, relative to the window's start: -24h for "24h before", 0 for start, +duration for end. */
  offsetMs: number;
  atMs: number;
  /** Stable and unique per window revision, e.g. "7:2:before-24h": the exactly-once dedupe key. */
  key: string;
  windowId: string;
  revision: number;
  /** "24h before", "start", "end". */
  label: string;
}

export interface ScheduleOptions {
  /** How long before the start to announce (config announceOffsets, in ms); 0 means the start. */
  offsetsMs: readonly number[];
  announceEnd: boolean;
}

export interface Schedule {
  /** In time order. */
  announcements: Announcement[];
  /** Offsets already past when this revision was recorded: they never applied (not "missed"). */
  notApplicable: Announcement[];
}

/** Key and label form, in the config's own syntax: 24h (not 1d), 1h30m, 45s. */
function compactDuration(ms: number): string {
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / MINUTE);
  const s = Math.floor((ms % MINUTE) / 1000);
  const rest = ms % 1000;
  const text = `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s ? `${s}s` : ''}${rest ? `${rest}ms` : ''}`;
  return text || '0s';
}

export function announcementKey(windowId: string, revision: number, kind: AnnouncementKind, beforeMs = 0): string {
  return `${windowId}:${revision}:${kind === 'before' ? `before-${compactDuration(beforeMs)}` : kind}`;
}

/** Parse a key back (for jobs that carry only the key). */
export function parseAnnouncementKey(key: string): { windowId: string; revision: number; kind: AnnouncementKind } | null {
  const m = /^(.+):(\d+):(before-[0-9a-z.]+|start|end)$/.exec(key);
  if (!m) return null;
  const kind = m[3]!.startsWith('before') ? 'before' : (m[3] as 'start' | 'end');
  return { windowId: m[1]!, revision: Number(m[2]), kind };
}

/** Every announcement of a window's current revision. Duplicate offsets (1h and 60m) collapse. */
export function announcementSchedule(window: Window, opts: ScheduleOptions): Schedule {
  const make = (kind: AnnouncementKind, offsetMs: number): Announcement => ({
    kind,
    offsetMs,
    atMs: window.startMs + offsetMs,
    key: announcementKey(window.id, window.revision, kind, -offsetMs),
    windowId: window.id,
    revision: window.revision,
    label: kind === 'before' ? `${compactDuration(-offsetMs)} before` : kind,
  });
  const all: Announcement[] = [];
  const befores = [...new Set(opts.offsetsMs.filter((o) => Number.isFinite(o) && o > 0))].sort((a, b) => b - a);
  for (const o of befores) all.push(make('before', -o));
  if (opts.offsetsMs.includes(0)) all.push(make('start', 0));
  if (opts.announceEnd) all.push(make('end', window.durationMs));
  return {
    announcements: all.filter((a) => a.atMs >= window.createdAtMs),
    notApplicable: all.filter((a) => a.atMs < window.createdAtMs),
  };
}

/**
 * cancelled / stale-revision: the window or this revision no longer stands; window-over: the window
 * has ended; missed: policy skip; superseded: a later announcement is due; outdated: no longer true
 * (a "starts in 1h" after the start).
 */
export type SkipReason = 'cancelled' | 'stale-revision' | 'window-over' | 'missed' | 'superseded' | 'outdated';

export interface DueOptions {
  now: number;
  /** Config patchWindows.missed: post missed announcements marked late, or skip them. */
  missedPolicy: 'late' | 'skip';
  /** Keys already delivered (from the store). */
  sentKeys: ReadonlySet<string> | readonly string[];
  /** Lateness that still counts as on time (queue latency, clock skew). Default 60 s. */
  graceMs?: number;
}

export interface DueResult {
  /** Post these now, in order; `late` ones say so ("posted late: Ferry was unavailable"). */
  post: Array<{ announcement: Announcement; late: boolean; lateByMs: number }>;
  /** Record these as done without posting, so they are never considered again. */
  skip: Array<{ announcement: Announcement; reason: SkipReason }>;
  /** Not yet due. */
  pending: Announcement[];
  /** The earliest pending time, for the next wake-up; null when nothing is left. */
  nextAtMs: number | null;
}

/**
 * What to do with a window's announcements at `now`. Rules, in order:
 * - already sent: nothing (not reported);
 * - window cancelled, or the announcement belongs to an older revision: skip;
 * - not due yet: pending;
 * - due within graceMs: post on time, unless a later announcement is also due (then superseded);
 * - missed (due longer ago): with policy skip, skip; with policy late, post marked late while it is
 *   still true: "before" only before the start, "start" only before the end, "end" always (it is the
 *   record that the window closed). A missed "before"/"start" once a later one is due is superseded:
 *   after an outage the channel gets one current message, not a burst of stale ones.
 */
export function dueAnnouncements(window: Window, schedule: Schedule | readonly Announcement[], opts: DueOptions): DueResult {
  const list = Array.isArray(schedule) ? (schedule as readonly Announcement[]) : (schedule as Schedule).announcements;
  const sent = opts.sentKeys instanceof Set ? opts.sentKeys : new Set(opts.sentKeys as readonly string[]);
  const grace = opts.graceMs ?? MINUTE;
  const { now } = opts;
  const endMs = windowEnd(window);
  const result: DueResult = { post: [], skip: [], pending: [], nextAtMs: null };

  const open = [...list].filter((a) => !sent.has(a.key)).sort((a, b) => a.atMs - b.atMs);
  const live: Announcement[] = [];
  for (const a of open) {
    if (window.status === 'cancelled') result.skip.push({ announcement: a, reason: 'cancelled' });
    else if (a.windowId !== window.id || a.revision !== window.revision) result.skip.push({ announcement: a, reason: 'stale-revision' });
    else if (a.atMs > now) result.pending.push(a);
    else live.push(a);
  }
  // Of the due before/start announcements only the latest is worth posting; a due end means the
  // window is over, which makes every before/start moot.
  const latestDue = live.filter((a) => a.kind !== 'end').at(-1);
  const endDue = live.some((a) => a.kind === 'end');
  for (const a of live) {
    const lateByMs = now - a.atMs;
    const late = lateByMs > grace;
    if (a.kind !== 'end' && (a !== latestDue || endDue)) {
      // Superseded by a later due announcement; if the end is due the window is over anyway.
      result.skip.push({ announcement: a, reason: endDue || now >= endMs ? 'window-over' : 'superseded' });
      continue;
    }
    if (!late) {
      result.post.push({ announcement: a, late: false, lateByMs });
      continue;
    }
    if (opts.missedPolicy === 'skip') result.skip.push({ announcement: a, reason: 'missed' });
    else if ((a.kind === 'before' && now >= window.startMs) || (a.kind === 'start' && now >= endMs)) {
      result.skip.push({ announcement: a, reason: now >= endMs ? 'window-over' : 'outdated' });
    } else result.post.push({ announcement: a, late: true, lateByMs });
  }
  result.nextAtMs = result.pending[0]?.atMs ?? null;
  return result;
}

// ---------------------------------------------------------------------------------------
// Rolling runs

export type HostRunStatus = 'pending' | 'running' | 'succeeded' | 'failed';

export interface RollingHost {
  host: string;
  status: HostRunStatus;
  /** Attempts made so far (a failed host with attempts < maxAttempts is retried). */
  attempts: number;
  error?: string;
}

export interface RollingInput {
  /** In run order. */
  hosts: readonly RollingHost[];
  /** Config patchWindows.maxFailedHosts (CAU's MaxFailedNodes): the run stops when more fail. */
  maxFailedHosts: number;
  /** Attempts per host, retries included (default 1: no retry). */
  maxAttempts?: number;
  windowStartMs?: number;
  windowEndMs: number;
  now: number;
  paused?: boolean;
  aborted?: boolean;
}

export interface RollingSummary {
  succeeded: string[];
  failed: string[];
  notStarted: string[];
}

export type RollingDecision =
  | { action: 'start'; host: string; attempt: number; summary: RollingSummary }
  | { action: 'wait'; reason: 'host-running' | 'paused' | 'before-window'; host?: string; untilMs?: number; summary: RollingSummary }
  | { action: 'stop'; reason: 'too-many-failures' | 'window-ended' | 'aborted'; message: string; summary: RollingSummary }
  | { action: 'done'; message: string; summary: RollingSummary };

/**
 * The next step of a rolling run: one host at a time, in order. A running host is always waited
 * for, even past the window's end or after an abort (a half-done drain is never abandoned); after
 * that: aborted → stop; failures over the maximum → stop; otherwise retry the failed host (attempts
 * left) or start the next pending one, but nothing new starts once the window has ended.
 */
export function rollingRunDecision(input: RollingInput): RollingDecision {
  const maxAttempts = Math.max(1, input.maxAttempts ?? 1);
  const finalFail = (h: RollingHost) => h.status === 'failed' && h.attempts >= maxAttempts;
  const summary: RollingSummary = {
    succeeded: input.hosts.filter((h) => h.status === 'succeeded').map((h) => h.host),
    failed: input.hosts.filter(finalFail).map((h) => h.host),
    notStarted: input.hosts.filter((h) => h.status === 'pending').map((h) => h.host),
  };
  const tally = () =>
    `${summary.succeeded.length} patched, ${summary.failed.length} failed` +
    (summary.notStarted.length ? `, ${summary.notStarted.length} not started (${listNames(summary.notStarted)})` : '');

  const running = input.hosts.find((h) => h.status === 'running');
  if (running) return { action: 'wait', reason: 'host-running', host: running.host, summary };
  if (input.aborted) return { action: 'stop', reason: 'aborted', message: `The run was aborted: ${tally()}.`, summary };
  if (summary.failed.length > input.maxFailedHosts) {
    return {
      action: 'stop',
      reason: 'too-many-failures',
      message: `Stopped: ${summary.failed.length} hosts failed (${listNames(summary.failed)}), over the maximum of ${input.maxFailedHosts}; ${tally()}.`,
      summary,
    };
  }
  const next = input.hosts.find((h) => h.status === 'failed' && h.attempts < maxAttempts) ?? input.hosts.find((h) => h.status === 'pending');
  if (!next) {
    const outcome = summary.failed.length ? 'finished with failures' : 'finished';
    return { action: 'done', message: `The run ${outcome}: ${tally()}.`, summary };
  }
  if (input.now >= input.windowEndMs) {
    return { action: 'stop', reason: 'window-ended', message: `Stopped: the window has ended, so nothing new starts; ${tally()}.`, summary };
  }
  if (input.paused) return { action: 'wait', reason: 'paused', summary };
  if (input.windowStartMs !== undefined && input.now < input.windowStartMs) {
    return { action: 'wait', reason: 'before-window', untilMs: input.windowStartMs, summary };
  }
  return { action: 'start', host: next.host, attempt: next.attempts + 1, summary };
}

/** Milliseconds as the announcement text says them: "in 1h", "in 30m". */
export function untilText(fromMs: number, toMs: number): string {
  const ms = Math.max(0, toMs - fromMs);
  // Announcements fire a little after their offset: 59.8s before the start is "in 1m", and
  // only a start less than a second away is "now".
  if (ms < 1000) return 'now';
  if (ms < MINUTE - 5000) return `in ${Math.round(ms / 1000)}s`;
  return `in ${formatDuration(Math.round(ms / MINUTE) * MINUTE)}`;
}

