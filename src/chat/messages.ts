/**
 * A neutral message model: workflows say what to show; src/bot/render/slack.ts turns it into
 * Block Kit (inside Slack's limits) and src/bot/render/text.ts into console text. Text uses a
 * small subset of Slack mrkdwn (*bold*, `code`, _italic_) that both renderers understand.
 */

export interface Button {
  /** action_id; Ferry's are "ferry:<verb>". */
  action: string;
  label: string;
  /** Opaque value handed back on click (op id, approval id + plan hash…). */
  value: string;
  style?: 'primary' | 'danger';
  confirm?: { title: string; text: string; confirm: string; deny: string };
  /** The console has no buttons: the command that does the same. */
  command: string;
}

export type Block =
  | { type: 'header'; text: string }
  | { type: 'section'; text: string }
  | { type: 'fields'; fields: string[] }
  | { type: 'context'; text: string }
  | { type: 'progress'; done: number; total: number; label: string }
  | { type: 'table'; title?: string; columns: string[]; rows: string[][]; full?: TableFile; /** Name of its file when attached (else from the title). */ name?: string }
  | { type: 'actions'; buttons: Button[] }
  | { type: 'divider' };

/**
 * A table too long to hold in memory: its CSV lines (header first) in a Redis list, written in
 * pages (jobs/table-file.ts). The block's `rows` are the first few, shown inline; surfaces that
 * take files stream the rest from Redis.
 */
export interface TableFile {
  /** Redis list key of the CSV lines. */
  key: string;
  /** Data rows in the list (the header not counted). */
  rows: number;
  /** Size of the CSV in bytes (each line and its newline). */
  bytes: number;
}

export interface Message {
  /** Plain fallback (notifications, screen readers) and the console's first line. */
  text: string;
  blocks: Block[];
}

export function message(text: string, ...blocks: Block[]): Message {
  return { text, blocks: blocks.length ? blocks : [{ type: 'section', text }] };
}

/**
 * User-supplied text echoed into mrkdwn (a patch-window note, a rejection reason): & < > as
 * entities, so `<!channel>` or `<http://x|disguised>` shows as typed instead of acting.
 */
export function escapeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export const section = (text: string): Block => ({ type: 'section', text });
export const context = (text: string): Block => ({ type: 'context', text });
export const header = (text: string): Block => ({ type: 'header', text });
export const divider = (): Block => ({ type: 'divider' });

/** "▓▓▓▓▓▓░░░░ 58%" */
export function progressBar(done: number, total: number, width = 20): string {
  const ratio = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(ratio * width);
  return `${'▓'.repeat(filled)}${'░'.repeat(width - filled)} ${Math.round(ratio * 100)}%`;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** A user reference both renderers understand: Slack IDs become mentions, console names stay. */
export function who(user: string): string {
  return /^[UW][A-Z0-9]{2,}$/.test(user) ? `<@${user}>` : `@${user}`;
}
