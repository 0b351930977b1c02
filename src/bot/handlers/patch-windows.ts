/** patch window …, patch windows, cancel patch window <id>: record, list and cancel patch windows. */
import type { CommandHandler, CommandTable, HandlerOf } from '../commands.js';
import type { ChatWorkflow } from '../router.js';
import { context, escapeText, message, plural, section, who } from '../../chat/messages.js';
import { resolveHosts } from './selection.js';
import { formatInstant, formatWindowTimes, windowEnd } from '../../core/windows.js';
import { formatDuration } from '../../core/duration.js';
import { compressNames } from '../../core/selectors.js';
import { cancelWindow, createWindow, WindowStore } from '../../jobs/workflows/patch-windows.js';
import { destinations } from '../../jobs/patch/scheduler.js';
import { RUN_ACTIONS, abortRun, approveRun, patchDone, pauseRun, type ControlInput, type ControlResult } from '../../jobs/patch/rolling.js';
import { clickAction, jobIdOf, type ActionSpec } from '../actions.js';
import type { Command } from '../grammar.js';
import { refusal } from '../../core/refusal.js';

const patchWindowCommand: HandlerOf<'patch-window'> = async (ctx, cmd) => {
  const hosts = await resolveHosts(ctx, cmd.selector);
  if (!hosts) return;
  const made = await createWindow(ctx.deps, { hosts, at: cmd.at, duration: cmd.duration, note: cmd.note, rolling: cmd.rolling, user: ctx.user, conv: ctx.conv });
  if (made.refused) {
    await ctx.refuse(refusal(`${made.sentence} Nothing was scheduled.`, made.code));
    return;
  }
  const w = made.window;
  const times = formatWindowTimes(w.startMs, windowEnd(w), w.zone);
  const head = `Patch window ${w.id} recorded: ${compressNames(w.hosts)} · ${times}.`;
  const lines = made.announcements.map((a) => `• ${a.label}: ${formatInstant(a.atMs, w.zone)}`);
  const where = destinations(ctx.deps, w).map((d) => (d.id === 'channel' ? `<#${d.conv.surface === 'slack' ? d.conv.channel : ''}>` : 'this thread'));
  const notes: string[] = [`window ${w.id} · ${plural(w.hosts.length, 'host')} · ${formatDuration(w.durationMs)}`];
  if (made.defaultZoneUsed) notes.push(`no zone given: ${w.zone} (config timezone)`);
  if (made.defaultDurationUsed) notes.push(`no duration given: ${formatDuration(w.durationMs)} (patchWindows.defaultDuration)`);
  if (made.notApplicable.length) notes.push(`too close to announce: ${made.notApplicable.map((a) => a.label).join(', ')}`);
  if (w.rolling) {
    const hook = ctx.deps.rt.config.patchWindows.hook;
    const patches = 'command' in hook ? `patches (hook \`${hook.command}\`)` : 'patches (you click Done)';
    notes.push(`rolling: at the start Ferry asks for approval, then drains, ${patches} and restores one host at a time`);
  }
  const conv = await ctx.answer(
    message(
      head,
      section(`:calendar: *${head}*${w.note ? `\nNote: ${escapeText(w.note)}` : ''}`),
      section(`*Announcements* (to ${where.join(' and ')}):\n${lines.join('\n') || '• none left before the start'}`),
      context(`${notes.join(' · ')} · cancel: "cancel patch window ${w.id}" · requested by ${who(ctx.user)}`),
    ),
  );
  // Made outside a thread (a slash command): "this thread" is the thread of this answer, so
  // the window's copies of its announcements go there, not top-level.
  if (conv.threadTs && conv.threadTs !== w.conv.threadTs) {
    await new WindowStore(ctx.deps.rt).update(w.id, { revision: w.revision, status: w.status }, { conv });
  }
};

const patchWindowsCommand: HandlerOf<'patch-windows'> = async (ctx) => {
  const store = new WindowStore(ctx.deps.rt);
  const now = ctx.deps.rt.clock.now();
  const upcoming = (await store.list({ sinceMs: now })).filter((w) => w.status === 'scheduled' || w.status === 'running');
  if (!upcoming.length) {
    await ctx.reply(message('No upcoming patch windows. Schedule one with "patch window hyp01..hyp04 at 2026-12-05 22:00 Europe/Amsterdam for 4h".'));
    return;
  }
  const rows = upcoming.map((w) => [
    w.id,
    compressNames(w.hosts, 4),
    formatWindowTimes(w.startMs, windowEnd(w), w.zone),
    `${w.status}${w.rolling ? ' · rolling' : ''}${w.runOpId ? ` (job ${w.runOpId})` : ''}`,
    (w.note ?? '').slice(0, 60),
  ]);
  await ctx.reply(
    message(
      `${plural(upcoming.length, 'upcoming patch window')}`,
      section(`*${plural(upcoming.length, 'upcoming patch window')}*`),
      { type: 'table', columns: ['Window', 'Hosts', 'When', 'State', 'Note'], rows },
      context('cancel one with "cancel patch window <id>"'),
    ),
  );
};

const cancelPatchWindowCommand: HandlerOf<'cancel-patch-window'> = async (ctx, cmd) => {
  const out = await cancelWindow(ctx.deps, cmd.id, ctx.user);
  if (out.refused) {
    await ctx.refuse(out);
    return;
  }
  const w = out.window;
  const run = w.runOpId ? ` Its rolling run (job ${w.runOpId}) stops after the host in progress.` : '';
  await ctx.answer(message(`Patch window ${w.id} is cancelled (${compressNames(w.hosts)} · ${formatWindowTimes(w.startMs, windowEnd(w), w.zone)}); no more announcements.${run}`));
};

// ---- rolling runs: typed commands and the card's buttons reach the same functions ----------

type Control = (deps: Parameters<typeof approveRun>[0], input: ControlInput) => Promise<ControlResult>;

const controls: Record<'approve-run' | 'pause-run' | 'resume-run' | 'abort-run' | 'patch-done', Control> = {
  'approve-run': approveRun,
  'pause-run': (d, i) => pauseRun(d, i, true),
  'resume-run': (d, i) => pauseRun(d, i, false),
  'abort-run': abortRun,
  'patch-done': patchDone,
};

type ControlName = keyof typeof controls;

function controlCommand(name: ControlName, fn: Control): CommandHandler<Command> {
  return async (ctx, cmd) => {
    const id = (cmd as Extract<Command, { name: ControlName }>).id;
    const opId = Number(id);
    if (!Number.isInteger(opId)) {
      await ctx.refuse(refusal(`"${id}" is not a job id; rolling runs are jobs, e.g. "${name.replace('-run', ' run').replace('patch-done', 'done')} 41".`));
      return;
    }
    const r = await fn(ctx.deps, { opId, user: ctx.user, groupMembers: ctx.groupMembers });
    if (r.refused) await ctx.refuse(r);
  };
}

/** A run card's button: value "<job>" or "<job>:<host>" (Done); it stands for the typed control. */
function controlClick(name: ControlName): ActionSpec {
  return clickAction(name, (value) => {
    const id = jobIdOf(value, ':');
    return id ? { name, id } : refusal('That button does not name a rolling run; nothing was done.', 'bad-button');
  }, async (ctx, cmd) => {
    const host = ctx.value.split(':')[1];
    const r = await controls[name](ctx.deps, { opId: Number(cmd.id), user: ctx.user, groupMembers: ctx.groupMembers, host: host || undefined });
    if (r.refused) await ctx.refuse(r);
  });
}

const controlCommands = Object.fromEntries((Object.keys(controls) as ControlName[]).map((name) => [name, controlCommand(name, controls[name])])) as CommandTable;

export const patchWindowsChat: ChatWorkflow = {
  name: 'patch-windows',
  commands: { 'patch-window': patchWindowCommand, 'patch-windows': patchWindowsCommand, 'cancel-patch-window': cancelPatchWindowCommand, ...controlCommands },
  actions: {
    [RUN_ACTIONS.approve]: controlClick('approve-run'),
    [RUN_ACTIONS.pause]: controlClick('pause-run'),
    [RUN_ACTIONS.resume]: controlClick('resume-run'),
    [RUN_ACTIONS.abort]: controlClick('abort-run'),
    [RUN_ACTIONS.done]: controlClick('patch-done'),
  },
};
