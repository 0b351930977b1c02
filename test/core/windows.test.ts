import { describe, expect, it } from 'vitest';
import {
  announcementKey,
  announcementSchedule,
  dueAnnouncements,
  formatInstant,
  formatWindowTimes,
  parseAnnouncementKey,
  parseWindowTime,
  resolveZone,
  rollingRunDecision,
  untilText,
  validateWindow,
  type RollingHost,
  type Window,
} from '../../src/core/windows.js';

const MIN = 60_000;
const H = 3_600_000;
const D = 86_400_000;
/** Sun 1 Nov 2026 12:00 UTC (13:00 in Amsterdam, 07:00 in New York): a fixed clock for every table. */
const NOW = Date.UTC(2026, 10, 1, 12, 0);
const utc = (y: number, mo: number, d: number, h: number, mi = 0) => Date.UTC(y, mo - 1, d, h, mi);

describe('parseWindowTime: accepted forms', () => {
  const cases: Array<[string, string, number, string, string]> = [
    // input, default zone, expected start, expected zone, expected normalised text
    ['2026-12-05 22:00 Europe/Amsterdam', 'UTC', utc(2026, 12, 5, 21), 'Europe/Amsterdam', '2026-12-05 22:00 Europe/Amsterdam'],
    ['2026-12-05 22:00 europe/amsterdam', 'UTC', utc(2026, 12, 5, 21), 'Europe/Amsterdam', '2026-12-05 22:00 Europe/Amsterdam'],
    ['2026-12-05T22:00 Europe/Amsterdam', 'UTC', utc(2026, 12, 5, 21), 'Europe/Amsterdam', '2026-12-05 22:00 Europe/Amsterdam'],
    ['2026-12-05 22:00', 'Europe/Amsterdam', utc(2026, 12, 5, 21), 'Europe/Amsterdam', '2026-12-05 22:00 Europe/Amsterdam'],
    ['2026-12-05 22:00', 'UTC', utc(2026, 12, 5, 22), 'UTC', '2026-12-05 22:00 UTC'],
    ['2026-12-05T22:00Z', 'Europe/Amsterdam', utc(2026, 12, 5, 22), 'UTC', '2026-12-05 22:00 UTC'],
    ['2026-12-05 22:00 UTC', 'Europe/Amsterdam', utc(2026, 12, 5, 22), 'UTC', '2026-12-05 22:00 UTC'],
    ['2026-12-05 22:00 GMT', 'Europe/Amsterdam', utc(2026, 12, 5, 22), 'UTC', '2026-12-05 22:00 UTC'],
    ['2026-12-05T22:00+01:00', 'UTC', utc(2026, 12, 5, 21), 'UTC+1', '2026-12-05 22:00 UTC+1'],
    ['2026-12-05 22:00 -0500', 'UTC', utc(2026, 12, 6, 3), 'UTC-5', '2026-12-05 22:00 UTC-5'],
    ['2026-12-05 22:00 +05:30', 'UTC', utc(2026, 12, 5, 16, 30), 'UTC+5:30', '2026-12-05 22:00 UTC+5:30'],
    ['2026-12-05 22:00 America/New_York', 'UTC', utc(2026, 12, 6, 3), 'America/New_York', '2026-12-05 22:00 America/New_York'],
    // Summer time in New York: -04:00.
    ['2027-06-05 22:00 America/New_York', 'UTC', utc(2027, 6, 6, 2), 'America/New_York', '2027-06-05 22:00 America/New_York'],
    ['2026-12-05 22:00 US/Eastern', 'UTC', utc(2026, 12, 6, 3), 'US/Eastern', '2026-12-05 22:00 US/Eastern'],
    ['2026-12-05 22:00 Asia/Kolkata', 'UTC', utc(2026, 12, 5, 16, 30), 'Asia/Kolkata', '2026-12-05 22:00 Asia/Kolkata'],
    // Relative days are calendar days in the zone: 1 Nov 13:00 in Amsterdam.
    ['today 22:00', 'Europe/Amsterdam', utc(2026, 11, 1, 21), 'Europe/Amsterdam', '2026-11-01 22:00 Europe/Amsterdam'],
    ['tomorrow 22:00', 'Europe/Amsterdam', utc(2026, 11, 2, 21), 'Europe/Amsterdam', '2026-11-02 22:00 Europe/Amsterdam'],
    ['Tomorrow 06:00 America/New_York', 'UTC', utc(2026, 11, 2, 11), 'America/New_York', '2026-11-02 06:00 America/New_York'],
    // Next occurrence: 22:00 is still ahead today; 11:00 has passed, so tomorrow.
    ['22:00', 'Europe/Amsterdam', utc(2026, 11, 1, 21), 'Europe/Amsterdam', '2026-11-01 22:00 Europe/Amsterdam'],
    ['11:00', 'Europe/Amsterdam', utc(2026, 11, 2, 10), 'Europe/Amsterdam', '2026-11-02 11:00 Europe/Amsterdam'],
    ['13:01', 'Europe/Amsterdam', utc(2026, 11, 1, 12, 1), 'Europe/Amsterdam', '2026-11-01 13:01 Europe/Amsterdam'],
    ['7:30 UTC', 'Europe/Amsterdam', utc(2026, 11, 2, 7, 30), 'UTC', '2026-11-02 07:30 UTC'],
    // DST fold with an offset: the offset picks the occurrence, the zone stays for display.
    ['2027-10-31 02:30 Europe/Amsterdam +02:00', 'UTC', utc(2027, 10, 31, 0, 30), 'Europe/Amsterdam', '2027-10-31 02:30 Europe/Amsterdam +02:00'],
    ['2027-10-31 02:30 Europe/Amsterdam +01:00', 'UTC', utc(2027, 10, 31, 1, 30), 'Europe/Amsterdam', '2027-10-31 02:30 Europe/Amsterdam +01:00'],
    ['2027-10-31 02:30 +01:00 Europe/Amsterdam', 'UTC', utc(2027, 10, 31, 1, 30), 'Europe/Amsterdam', '2027-10-31 02:30 Europe/Amsterdam +01:00'],
    ['2027-11-07 01:30 America/New_York -05:00', 'UTC', utc(2027, 11, 7, 6, 30), 'America/New_York', '2027-11-07 01:30 America/New_York -05:00'],
    // Just outside the gap and the fold.
    ['2027-03-28 01:59 Europe/Amsterdam', 'UTC', utc(2027, 3, 28, 0, 59), 'Europe/Amsterdam', '2027-03-28 01:59 Europe/Amsterdam'],
    ['2027-03-28 03:00 Europe/Amsterdam', 'UTC', utc(2027, 3, 28, 1), 'Europe/Amsterdam', '2027-03-28 03:00 Europe/Amsterdam'],
    ['2027-10-31 03:00 Europe/Amsterdam', 'UTC', utc(2027, 10, 31, 2), 'Europe/Amsterdam', '2027-10-31 03:00 Europe/Amsterdam'],
    // A consistent offset outside a fold is accepted too.
    ['2026-12-05 22:00 Europe/Amsterdam +01:00', 'UTC', utc(2026, 12, 5, 21), 'Europe/Amsterdam', '2026-12-05 22:00 Europe/Amsterdam'],
    ['  2026-12-05   22:00   Europe/Amsterdam ', 'UTC', utc(2026, 12, 5, 21), 'Europe/Amsterdam', '2026-12-05 22:00 Europe/Amsterdam'],
  ];
  it.each(cases)('%s (default %s)', (input, defaultZone, startMs, zone, text) => {
    const r = parseWindowTime(input, { defaultZone, now: NOW });
    expect(r).toMatchObject({ ok: true, startMs, zone, text });
  });

  it('says when the default zone was used', () => {
    expect(parseWindowTime('2026-12-05 22:00', { defaultZone: 'UTC', now: NOW })).toMatchObject({ defaultZoneUsed: true });
    expect(parseWindowTime('2026-12-05 22:00 UTC', { defaultZone: 'UTC', now: NOW })).toMatchObject({ defaultZoneUsed: false });
  });
});

describe('parseWindowTime: refused, one sentence each', () => {
  const cases: Array<[string, string, number, string]> = [
    // input, default zone, now, exact error
    [
      '2027-03-28 02:30 Europe/Amsterdam', 'UTC', NOW,
      '2027-03-28 02:30 Europe/Amsterdam does not exist: clocks jump from 02:00 to 03:00 that night; pick 01:30 or 03:30.',
    ],
    [
      '2027-03-28 02:00 Europe/Amsterdam', 'UTC', NOW,
      '2027-03-28 02:00 Europe/Amsterdam does not exist: clocks jump from 02:00 to 03:00 that night; pick 01:00 or 03:00.',
    ],
    [
      '2027-03-28 02:30', 'Europe/Amsterdam', NOW,
      '2027-03-28 02:30 Europe/Amsterdam does not exist: clocks jump from 02:00 to 03:00 that night; pick 01:30 or 03:30.',
    ],
    // An offset does not rescue a time that does not exist.
    [
      '2027-03-28 02:30 Europe/Amsterdam +01:00', 'UTC', NOW,
      '2027-03-28 02:30 Europe/Amsterdam does not exist: clocks jump from 02:00 to 03:00 that night; pick 01:30 or 03:30.',
    ],
    [
      '2027-03-14 02:30 America/New_York', 'UTC', NOW,
      '2027-03-14 02:30 America/New_York does not exist: clocks jump from 02:00 to 03:00 that night; pick 01:30 or 03:30.',
    ],
    [
      '2027-10-31 02:30 Europe/Amsterdam', 'UTC', NOW,
      '2027-10-31 02:30 Europe/Amsterdam happens twice: clocks go back from 03:00 to 02:00 that night; add the offset, ' +
        '"2027-10-31 02:30 Europe/Amsterdam +02:00" for the first or "2027-10-31 02:30 Europe/Amsterdam +01:00" for the second.',
    ],
    [
      '2027-11-07 01:30 America/New_York', 'UTC', NOW,
      '2027-11-07 01:30 America/New_York happens twice: clocks go back from 02:00 to 01:00 that night; add the offset, ' +
        '"2027-11-07 01:30 America/New_York -04:00" for the first or "2027-11-07 01:30 America/New_York -05:00" for the second.',
    ],
    [
      '2027-10-31 02:30 Europe/Amsterdam +03:00', 'UTC', NOW,
      "+03:00 is not Europe/Amsterdam's offset at 2027-10-31 02:30; it is +02:00 or +01:00 then.",
    ],
    ['2026-12-05 22:00 Europe/Amsterdam -05:00', 'UTC', NOW, "-05:00 is not Europe/Amsterdam's offset at 2026-12-05 22:00; it is +01:00 then."],
    // Past.
    ['2026-10-05 22:00 UTC', 'UTC', NOW, '2026-10-05 22:00 UTC is in the past; it is now 2026-11-01 12:00 UTC.'],
    ['2026-11-01 12:00 UTC', 'UTC', NOW, '2026-11-01 12:00 UTC is in the past; it is now 2026-11-01 12:00 UTC.'],
    ['today 09:00', 'Europe/Amsterdam', NOW, '2026-11-01 09:00 Europe/Amsterdam is in the past; it is now 2026-11-01 13:00 Europe/Amsterdam.'],
    ['2026-11-01 06:59 America/New_York', 'UTC', NOW, '2026-11-01 06:59 America/New_York is in the past; it is now 2026-11-01 07:00 America/New_York.'],
    // Zones.
    ['2026-12-05 22:00 Europe/Amsterdm', 'UTC', NOW, 'Europe/Amsterdm is not a time zone; did you mean Europe/Amsterdam?'],
    ['2026-12-05 22:00 America/New York', 'UTC', NOW, 'America/New York is not a time zone; did you mean America/New_York?'],
    ['2026-12-05 22:00 Amsterdam', 'UTC', NOW, 'Amsterdam is not a time zone; did you mean Europe/Amsterdam?'],
    ['2026-12-05 22:00 EST', 'UTC', NOW, 'EST is an abbreviation, not a time zone; use a zone name such as America/New_York.'],
    ['2026-12-05 22:00 CET', 'UTC', NOW, 'CET is an abbreviation, not a time zone; use a zone name such as Europe/Amsterdam.'],
    ['2026-12-05 22:00 Nowhere/Land', 'UTC', NOW, 'Nowhere/Land is not a time zone; use a zone name such as Europe/Amsterdam or UTC.'],
    ['2026-12-05 22:00', 'Mars/Olympus', NOW, 'The configured default zone is unusable: Mars/Olympus is not a time zone; use a zone name such as Europe/Amsterdam or UTC.'],
    // Shapes.
    ['2026-02-30 10:00 UTC', 'UTC', NOW, '2026-02-30 is not a date.'],
    ['2026-12-05 24:00 UTC', 'UTC', NOW, '24:00 is not a time of day; use the 24-hour clock, 00:00 to 23:59.'],
    ['next friday', 'UTC', NOW, '"next friday" is not a time I understand; write it like 2026-12-05 22:00 Europe/Amsterdam, tomorrow 22:00, or 22:00.'],
    ['10pm', 'UTC', NOW, '"10pm" is not a time I understand; write it like 2026-12-05 22:00 Europe/Amsterdam, tomorrow 22:00, or 22:00.'],
    ['22:00:00', 'UTC', NOW, '"22:00:00" is not a time I understand; write it like 2026-12-05 22:00 Europe/Amsterdam, tomorrow 22:00, or 22:00.'],
    ['', 'UTC', NOW, 'A patch window needs a start time; write it like 2026-12-05 22:00 Europe/Amsterdam, tomorrow 22:00, or 22:00.'],
    ['2026-12-05 22:00 +01:00 +02:00', 'UTC', NOW, 'Give one offset, not both +01:00 and +02:00.'],
    ['2026-12-05 22:00 +15:00', 'UTC', NOW, '+15:00 is not a UTC offset; offsets run from -12:00 to +14:00.'],
  ];
  it.each(cases)('%s', (input, defaultZone, now, error) => {
    expect(parseWindowTime(input, { defaultZone, now })).toEqual({ ok: false, error });
  });

  it('refuses starts further ahead than maxAheadMs when given', () => {
    const r = parseWindowTime('2062-12-05 22:00 UTC', { defaultZone: 'UTC', now: NOW, maxAheadMs: 366 * D });
    expect(r).toEqual({ ok: false, error: '2062-12-05 22:00 UTC is more than 366d ahead; check the date.' });
  });

  it('a next-occurrence time that lands in a gap is refused, not moved', () => {
    const now = utc(2027, 3, 27, 12); // Sat before the spring-forward night
    const r = parseWindowTime('tomorrow 02:30', { defaultZone: 'Europe/Amsterdam', now });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/does not exist/);
  });
});

describe('resolveZone', () => {
  it.each([
    ['UTC', 'UTC'],
    ['z', 'UTC'],
    ['Etc/UTC', 'UTC'],
    ['Asia/Kolkata', 'Asia/Kolkata'],
    ['asia/calcutta', 'Asia/Calcutta'],
    ['US/Eastern', 'US/Eastern'],
    ['Europe/Amsterdam', 'Europe/Amsterdam'],
  ])('%s -> %s', (input, zone) => {
    expect(resolveZone(input)).toEqual({ ok: true, zone });
  });
});

describe('formatWindowTimes / formatInstant', () => {
  it.each([
    [utc(2026, 12, 5, 21), utc(2026, 12, 6, 1), 'Europe/Amsterdam', 'Sat 5 Dec 22:00–02:00 Europe/Amsterdam (21:00–01:00 UTC)'],
    [utc(2026, 12, 5, 21), utc(2026, 12, 5, 23), 'UTC', 'Sat 5 Dec 21:00–23:00 UTC'],
    // Local start after midnight, UTC start the evening before: the UTC part names its day.
    [utc(2026, 12, 5, 23, 30), utc(2026, 12, 6, 1), 'Europe/Amsterdam', 'Sun 6 Dec 00:30–02:00 Europe/Amsterdam (Sat 5 Dec 23:30–01:00 UTC)'],
    [utc(2026, 12, 6, 3), utc(2026, 12, 6, 7), 'America/New_York', 'Sat 5 Dec 22:00–02:00 America/New_York (Sun 6 Dec 03:00–07:00 UTC)'],
    // 24h or more: the end carries its date.
    [utc(2026, 12, 5, 21), utc(2026, 12, 7, 1), 'America/New_York', 'Sat 5 Dec 16:00–Sun 6 Dec 20:00 America/New_York (21:00–Mon 7 Dec 01:00 UTC)'],
    // Across the fall-back night: local times are each instant's own.
    [utc(2027, 10, 30, 23), utc(2027, 10, 31, 3), 'Europe/Amsterdam', 'Sun 31 Oct 01:00–04:00 Europe/Amsterdam (Sat 30 Oct 23:00–03:00 UTC)'],
    [utc(2026, 12, 5, 21), utc(2026, 12, 5, 23), 'UTC+1', 'Sat 5 Dec 22:00–00:00 UTC+1 (21:00–23:00 UTC)'],
  ])('%#: %s', (start, end, zone, text) => {
    expect(formatWindowTimes(start, end, zone)).toBe(text);
  });

  it('formatInstant', () => {
    expect(formatInstant(utc(2026, 12, 5, 21), 'Europe/Amsterdam')).toBe('Sat 5 Dec 22:00 Europe/Amsterdam (21:00 UTC)');
    expect(formatInstant(utc(2026, 12, 5, 23, 30), 'Europe/Amsterdam')).toBe('Sun 6 Dec 00:30 Europe/Amsterdam (Sat 5 Dec 23:30 UTC)');
    expect(formatInstant(utc(2026, 12, 5, 21), 'UTC')).toBe('Sat 5 Dec 21:00 UTC');
  });

  it('untilText', () => {
    expect(untilText(0, H)).toBe('in 1h');
    expect(untilText(0, 90 * MIN + 10_000)).toBe('in 1h 30m');
    // The 1-minute announcement runs a little late: a minute, not "now", remains.
    expect(untilText(0, 59_800)).toBe('in 1m');
    expect(untilText(0, 30_000)).toBe('in 30s');
    expect(untilText(0, 1_400)).toBe('in 1s');
    expect(untilText(0, 400)).toBe('now');
    expect(untilText(5_000, 0)).toBe('now');
  });
});

function win(over: Partial<Window> = {}): Window {
  return {
    id: '7',
    revision: 1,
    hosts: ['hyp01', 'hyp02'],
    startMs: utc(2026, 12, 5, 21),
    durationMs: 2 * H,
    zone: 'UTC',
    status: 'scheduled',
    createdAtMs: NOW,
    ...over,
  };
}

describe('validateWindow', () => {
  const base = {
    hosts: ['hyp02', 'hyp03'],
    startMs: utc(2026, 12, 5, 22),
    durationMs: 4 * H,
    existing: [win()],
    maxDurationMs: 12 * H,
    now: NOW,
  };
  const cases: Array<[string, Partial<typeof base> & { note?: string; ignoreId?: string; zone?: string }, string | null]> = [
    ['clean', { existing: [] }, null],
    ['zero duration', { durationMs: 0 }, 'A patch window needs a duration longer than zero, e.g. "for 4h".'],
    ['negative duration', { durationMs: -H }, 'A patch window needs a duration longer than zero, e.g. "for 4h".'],
    ['NaN duration', { durationMs: Number.NaN }, 'A patch window needs a duration longer than zero, e.g. "for 4h".'],
    ['over max', { durationMs: 16 * H }, 'A 16h window is longer than the maximum of 12h (patchWindows.maxDuration); split it into shorter windows.'],
    ['exactly max is fine', { durationMs: 12 * H, existing: [] }, null],
    ['no hosts', { hosts: [] }, 'A patch window needs at least one host.'],
    ['past start', { startMs: NOW - MIN }, 'A patch window cannot start in the past.'],
    ['overlap one host', {}, 'hyp02 is already in window 7 (Sat 5 Dec 21:00–23:00 UTC).'],
    [
      'overlap shown in another zone',
      { zone: 'Europe/Amsterdam' },
      'hyp02 is already in window 7 (Sat 5 Dec 22:00–00:00 Europe/Amsterdam (21:00–23:00 UTC)).',
    ],
    ['overlap several hosts', { hosts: ['hyp01', 'hyp02'] }, 'hyp01 and hyp02 are already in window 7 (Sat 5 Dec 21:00–23:00 UTC).'],
    [
      'overlap two windows',
      { existing: [win({ id: '9', hosts: ['hyp03'], startMs: utc(2026, 12, 6, 1) }), win()] },
      'hyp02 is already in window 7 (Sat 5 Dec 21:00–23:00 UTC); hyp03 is already in window 9 (Sun 6 Dec 01:00–03:00 UTC).',
    ],
    ['back to back is not overlap', { startMs: utc(2026, 12, 5, 23) }, null],
    ['ends as the other starts', { startMs: utc(2026, 12, 5, 17) }, null],
    ['other hosts only', { hosts: ['hyp05'] }, null],
    ['cancelled windows do not count', { existing: [win({ status: 'cancelled' })] }, null],
    ['a revision does not overlap itself', { ignoreId: '7' }, null],
    ['note too long', { existing: [], note: 'x'.repeat(501) }, 'The note is 501 characters; keep it under 500.'],
  ];
  it.each(cases)('%s', (_name, over, error) => {
    const r = validateWindow({ ...base, ...over });
    if (error === null) expect(r).toEqual({ ok: true, endMs: (over.startMs ?? base.startMs) + (over.durationMs ?? base.durationMs) });
    else expect(r).toEqual({ ok: false, error });
  });
});

const DEFAULT_OFFSETS = [24 * H, H, 0];

describe('announcementSchedule', () => {
  it('a window days ahead gets every announcement, in order, with stable keys', () => {
    const s = announcementSchedule(win({ revision: 3 }), { offsetsMs: DEFAULT_OFFSETS, announceEnd: true });
    const start = utc(2026, 12, 5, 21);
    expect(s.notApplicable).toEqual([]);
    expect(s.announcements.map((a) => [a.kind, a.offsetMs, a.atMs, a.key, a.label])).toEqual([
      ['before', -24 * H, start - 24 * H, '7:3:before-24h', '24h before'],
      ['before', -H, start - H, '7:3:before-1h', '1h before'],
      ['start', 0, start, '7:3:start', 'start'],
      ['end', 2 * H, start + 2 * H, '7:3:end', 'end'],
    ]);
  });

  it('a window 30 minutes ahead: 24h and 1h never applied (not missed)', () => {
    const w = win({ startMs: NOW + 30 * MIN, createdAtMs: NOW });
    const s = announcementSchedule(w, { offsetsMs: DEFAULT_OFFSETS, announceEnd: true });
    expect(s.announcements.map((a) => a.key)).toEqual(['7:1:start', '7:1:end']);
    expect(s.notApplicable.map((a) => a.key)).toEqual(['7:1:before-24h', '7:1:before-1h']);
    // And nothing is due at creation: the start is the first post.
    const due = dueAnnouncements(w, s, { now: NOW, missedPolicy: 'late', sentKeys: [] });
    expect(due.post).toEqual([]);
    expect(due.nextAtMs).toBe(NOW + 30 * MIN);
  });

  it.each([
    ['no end', { offsetsMs: DEFAULT_OFFSETS, announceEnd: false }, ['7:1:before-24h', '7:1:before-1h', '7:1:start']],
    ['no start', { offsetsMs: [H], announceEnd: true }, ['7:1:before-1h', '7:1:end']],
    ['duplicates collapse, unsorted input', { offsetsMs: [H, 0, 60 * MIN, 90 * MIN], announceEnd: false }, ['7:1:before-1h30m', '7:1:before-1h', '7:1:start']],
    ['nothing configured', { offsetsMs: [], announceEnd: false }, []],
  ])('%s', (_name, opts, keys) => {
    expect(announcementSchedule(win(), opts).announcements.map((a) => a.key)).toEqual(keys);
  });

  it('keys round-trip', () => {
    expect(announcementKey('7', 2, 'before', 24 * H)).toBe('7:2:before-24h');
    expect(parseAnnouncementKey('7:2:before-24h')).toEqual({ windowId: '7', revision: 2, kind: 'before' });
    expect(parseAnnouncementKey('pw-12:10:end')).toEqual({ windowId: 'pw-12', revision: 10, kind: 'end' });
    expect(parseAnnouncementKey('nonsense')).toBeNull();
  });
});

describe('dueAnnouncements', () => {
  const start = utc(2026, 12, 5, 21);
  const end = start + 2 * H;
  const w = win();
  const schedule = announcementSchedule(w, { offsetsMs: DEFAULT_OFFSETS, announceEnd: true });
  type Row = [string, { now: number; policy?: 'late' | 'skip'; sent?: string[]; window?: Window }, string[], string[], string[]];
  // name, options, post (key, "!late" suffix when late), skip ("key=reason"), pending
  const cases: Row[] = [
    ['days before: nothing due', { now: NOW }, [], [], ['7:1:before-24h', '7:1:before-1h', '7:1:start', '7:1:end']],
    ['24h before, on the dot', { now: start - 24 * H }, ['7:1:before-24h'], [], ['7:1:before-1h', '7:1:start', '7:1:end']],
    ['30s late is on time (grace)', { now: start - 24 * H + 30_000 }, ['7:1:before-24h'], [], ['7:1:before-1h', '7:1:start', '7:1:end']],
    ['already sent: nothing', { now: start - 24 * H, sent: ['7:1:before-24h'] }, [], [], ['7:1:before-1h', '7:1:start', '7:1:end']],
    ['missed 24h, policy late: posted late', { now: start - 20 * H }, ['7:1:before-24h!late'], [], ['7:1:before-1h', '7:1:start', '7:1:end']],
    ['missed 24h, policy skip', { now: start - 20 * H, policy: 'skip' }, [], ['7:1:before-24h=missed'], ['7:1:before-1h', '7:1:start', '7:1:end']],
    [
      'missed 24h and 1h: only the latest, late',
      { now: start - 30 * MIN },
      ['7:1:before-1h!late'],
      ['7:1:before-24h=superseded'],
      ['7:1:start', '7:1:end'],
    ],
    [
      'down across the start: start posted late, befores superseded',
      { now: start + 10 * MIN },
      ['7:1:start!late'],
      ['7:1:before-24h=superseded', '7:1:before-1h=superseded'],
      ['7:1:end'],
    ],
    [
      'start on time with the 1h already sent',
      { now: start, sent: ['7:1:before-24h', '7:1:before-1h'] },
      ['7:1:start'],
      [],
      ['7:1:end'],
    ],
    [
      'down across the whole window, policy late: the end only',
      { now: end + H },
      ['7:1:end!late'],
      ['7:1:before-24h=window-over', '7:1:before-1h=window-over', '7:1:start=window-over'],
      [],
    ],
    [
      'down across the whole window, policy skip',
      { now: end + H, policy: 'skip' },
      [],
      ['7:1:before-24h=window-over', '7:1:before-1h=window-over', '7:1:start=window-over', '7:1:end=missed'],
      [],
    ],
    ['end on time', { now: end, sent: ['7:1:before-24h', '7:1:before-1h', '7:1:start'] }, ['7:1:end'], [], []],
    [
      'cancelled: everything unsent is skipped',
      { now: start - 2 * H, sent: ['7:1:before-24h'], window: win({ status: 'cancelled' }) },
      [],
      ['7:1:before-1h=cancelled', '7:1:start=cancelled', '7:1:end=cancelled'],
      [],
    ],
    [
      'old revision: the schedule of revision 1 is void under revision 2',
      { now: start - 24 * H, window: win({ revision: 2 }) },
      [],
      ['7:1:before-24h=stale-revision', '7:1:before-1h=stale-revision', '7:1:start=stale-revision', '7:1:end=stale-revision'],
      [],
    ],
  ];
  it.each(cases)('%s', (_name, o, post, skip, pending) => {
    const r = dueAnnouncements(o.window ?? w, schedule, { now: o.now, missedPolicy: o.policy ?? 'late', sentKeys: new Set(o.sent ?? []) });
    expect(r.post.map((p) => p.announcement.key + (p.late ? '!late' : ''))).toEqual(post);
    expect(r.skip.map((s) => `${s.announcement.key}=${s.reason}`)).toEqual(skip);
    expect(r.pending.map((a) => a.key)).toEqual(pending);
    expect(r.nextAtMs).toBe(r.pending[0]?.atMs ?? null);
  });

  it('a late "before" whose message is no longer true is skipped as outdated (no start announcement configured)', () => {
    const s = announcementSchedule(w, { offsetsMs: [H], announceEnd: true });
    const r = dueAnnouncements(w, s, { now: start + 5 * MIN, missedPolicy: 'late', sentKeys: [] });
    expect(r.post).toEqual([]);
    expect(r.skip.map((x) => `${x.announcement.key}=${x.reason}`)).toEqual(['7:1:before-1h=outdated']);
  });

  it('reports how late a late post is', () => {
    const r = dueAnnouncements(w, schedule, { now: start - 20 * H, missedPolicy: 'late', sentKeys: [] });
    expect(r.post[0]).toMatchObject({ late: true, lateByMs: 4 * H });
  });

  it('a custom grace turns a small delay into lateness', () => {
    const r = dueAnnouncements(w, schedule, { now: start - 24 * H + 30_000, missedPolicy: 'late', sentKeys: [], graceMs: 10_000 });
    expect(r.post.map((p) => p.late)).toEqual([true]);
  });

  it('accepts a plain announcement array', () => {
    const r = dueAnnouncements(w, schedule.announcements, { now: start, missedPolicy: 'late', sentKeys: ['7:1:before-24h', '7:1:before-1h'] });
    expect(r.post.map((p) => p.announcement.key)).toEqual(['7:1:start']);
  });
});

describe('rollingRunDecision', () => {
  const start = utc(2026, 12, 5, 21);
  const end = start + 4 * H;
  const hosts = (spec: string): RollingHost[] =>
    // "hyp01:ok hyp02:fail hyp03:run hyp04" — status shorthand; "fail2" = failed after 2 attempts
    spec.split(' ').map((t) => {
      const [host, st = 'pending'] = t.split(':') as [string, string?];
      if (st === 'ok') return { host, status: 'succeeded', attempts: 1 };
      if (st.startsWith('fail')) return { host, status: 'failed', attempts: Number(st.slice(4) || '1') };
      if (st === 'run') return { host, status: 'running', attempts: 1 };
      return { host, status: 'pending', attempts: 0 };
    });
  type Row = [string, { spec: string; now?: number; max?: number; attempts?: number; paused?: boolean; aborted?: boolean }, Record<string, unknown>];
  const cases: Row[] = [
    ['first host', { spec: 'hyp01 hyp02 hyp03 hyp04' }, { action: 'start', host: 'hyp01', attempt: 1 }],
    ['in order', { spec: 'hyp01:ok hyp02 hyp03' }, { action: 'start', host: 'hyp02' }],
    ['waits for the running host', { spec: 'hyp01:ok hyp02:run hyp03' }, { action: 'wait', reason: 'host-running', host: 'hyp02' }],
    ['waits for the running host even after the end', { spec: 'hyp01:run hyp02', now: end + H }, { action: 'wait', reason: 'host-running' }],
    ['waits for the running host even when aborted', { spec: 'hyp01:run hyp02', aborted: true }, { action: 'wait', reason: 'host-running' }],
    ['one failure within max 1: carry on', { spec: 'hyp01:ok hyp02:fail hyp03 hyp04', max: 1 }, { action: 'start', host: 'hyp03' }],
    [
      'second failure over max 1: stop',
      { spec: 'hyp01:fail hyp02:fail hyp03 hyp04', max: 1 },
      {
        action: 'stop',
        reason: 'too-many-failures',
        message: 'Stopped: 2 hosts failed (hyp01 and hyp02), over the maximum of 1; 0 patched, 2 failed, 2 not started (hyp03 and hyp04).',
      },
    ],
    ['max 0: first failure stops', { spec: 'hyp01:fail hyp02', max: 0 }, { action: 'stop', reason: 'too-many-failures' }],
    ['retry a failed host with attempts left', { spec: 'hyp01:ok hyp02:fail1 hyp03', attempts: 2 }, { action: 'start', host: 'hyp02', attempt: 2 }],
    ['a failed host out of attempts counts as failed', { spec: 'hyp01:fail2 hyp02', attempts: 2, max: 1 }, { action: 'start', host: 'hyp02' }],
    [
      'nothing new after the window ends',
      { spec: 'hyp01:ok hyp02 hyp03', now: end },
      { action: 'stop', reason: 'window-ended', message: 'Stopped: the window has ended, so nothing new starts; 1 patched, 0 failed, 2 not started (hyp02 and hyp03).' },
    ],
    ['no retry after the window ends', { spec: 'hyp01:fail1', now: end, attempts: 2 }, { action: 'stop', reason: 'window-ended' }],
    ['paused', { spec: 'hyp01:ok hyp02', paused: true }, { action: 'wait', reason: 'paused' }],
    ['aborted', { spec: 'hyp01:ok hyp02', aborted: true }, { action: 'stop', reason: 'aborted', message: 'The run was aborted: 1 patched, 0 failed, 1 not started (hyp02).' }],
    ['before the window', { spec: 'hyp01', now: start - MIN }, { action: 'wait', reason: 'before-window', untilMs: start }],
    ['all done', { spec: 'hyp01:ok hyp02:ok' }, { action: 'done', message: 'The run finished: 2 patched, 0 failed.' }],
    ['done with a tolerated failure', { spec: 'hyp01:ok hyp02:fail hyp03:ok hyp04:ok', max: 1 }, { action: 'done', message: 'The run finished with failures: 3 patched, 1 failed.' }],
    [
      'all done even after the end',
      { spec: 'hyp01:ok hyp02:ok', now: end + H },
      { action: 'done', summary: { succeeded: ['hyp01', 'hyp02'], failed: [], notStarted: [] } },
    ],
  ];
  it.each(cases)('%s', (_name, o, expected) => {
    const d = rollingRunDecision({
      hosts: hosts(o.spec),
      maxFailedHosts: o.max ?? 1,
      maxAttempts: o.attempts,
      windowStartMs: start,
      windowEndMs: end,
      now: o.now ?? start + H,
      paused: o.paused,
      aborted: o.aborted,
    });
    expect(d).toMatchObject(expected);
  });

  it('the done-means scenario: four hosts, one injected failure, max 1 — the others patched in order', () => {
    const state = hosts('hyp01 hyp02 hyp03 hyp04');
    const started: string[] = [];
    let now = start;
    for (let step = 0; step < 10; step++) {
      const d = rollingRunDecision({ hosts: state, maxFailedHosts: 1, windowStartMs: start, windowEndMs: end, now });
      if (d.action !== 'start') {
        expect(d).toMatchObject({ action: 'done', summary: { succeeded: ['hyp01', 'hyp03', 'hyp04'], failed: ['hyp02'] } });
        break;
      }
      started.push(d.host);
      const h = state.find((x) => x.host === d.host)!;
      h.attempts = d.attempt;
      h.status = d.host === 'hyp02' ? 'failed' : 'succeeded';
      now += 30 * MIN;
    }
    expect(started).toEqual(['hyp01', 'hyp02', 'hyp03', 'hyp04']);
  });
});
