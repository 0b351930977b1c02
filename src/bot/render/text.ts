/** Message -> console text: the same content as Slack, buttons shown as the commands that do the same. */
import type { Block, Message } from '../../chat/messages.js';
import { progressBar } from '../../chat/messages.js';
import { tableLines } from './table.js';

/** Slack mrkdwn to plain text: keep it readable in a terminal. */
const EMOJI: Record<string, string> = {
  warning: '⚠',
  wrench: '🔧',
  white_check_mark: '✔',
  heavy_check_mark: '✔',
  x: '✖',
  no_entry: '⛔',
  hourglass_flowing_sand: '⏳',
  arrows_counterclockwise: '↻',
  rotating_light: '🚨',
  information_source: 'ℹ',
};

export function plainText(text: string): string {
  return text
    .replace(/:([a-z_]+):/g, (m, name: string) => EMOJI[name] ?? m)
    .replace(/<!subteam\^([A-Z0-9]+)(\|([^>]+))?>/g, (_, id: string, _p, name?: string) => `@${name ?? id}`)
    .replace(/<@([A-Z0-9]+)>/g, '@$1')
    .replace(/<#([A-Z0-9]+)(\|([^>]+))?>/g, (_, id: string, _p, name?: string) => `#${name ?? id}`)
    .replace(/<(https?:[^|>]+)\|([^>]+)>/g, '$2 ($1)')
    .replace(/\*([^*\n]+)\*/g, '$1')
    .replace(/(^|\s)_([^_\n]+)_(?=\s|$|[.,;:])/g, '$1$2')
    .replace(/`([^`\n]+)`/g, '$1')
    // Escaped user text (escapeText) reads as typed.
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function renderBlock(b: Block): string[] {
  switch (b.type) {
    case 'header':
      return [b.text.toUpperCase()];
    case 'section':
      return [plainText(b.text)];
    case 'fields':
      return b.fields.map((f) => `  ${plainText(f).replace(/\n/g, ': ')}`);
    case 'context':
      return [`  ${plainText(b.text)}`];
    case 'progress':
      return [`${progressBar(b.done, b.total)}  ${plainText(b.label)}`];
    case 'divider':
      return ['—'];
    case 'table':
      return [
        ...(b.title ? [plainText(b.title)] : []),
        ...tableLines(b.columns, b.rows).map((l) => `  ${l}`),
        // The console takes no files: it says how much of a long table it shows.
        ...(b.full && b.full.rows > b.rows.length ? [`  (showing ${b.rows.length} of ${b.full.rows} rows)`] : []),
      ];
    case 'actions':
      return b.buttons.map((btn) => `  [${btn.label}]  → type: ${btn.command}`);
  }
}

export function renderText(msg: Message): string {
  if (!msg.blocks.length) return plainText(msg.text);
  return msg.blocks.flatMap(renderBlock).join('\n');
}
