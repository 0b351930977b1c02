/**
 * Message -> Block Kit, inside Slack's limits: 50 blocks per message, 3000 characters per
 * section text, 10 fields, 25 elements per actions block, 150 characters per header. Long
 * tables are split over several sections and, past a size, attached as a file instead.
 */
import type { Block, Message, TableFile } from '../../chat/messages.js';
import { progressBar } from '../../chat/messages.js';
import { tableCsv, tableLines } from './table.js';

export const LIMITS = { blocks: 50, sectionText: 3000, fields: 10, fieldText: 2000, actions: 25, header: 150, buttonText: 75, contextElements: 10 };

/** Rows shown inline before the rest goes to an attached file. */
export const INLINE_TABLE_ROWS = 60;

export type SlackBlock = Record<string, unknown>;

export interface SlackPayload {
  text: string;
  blocks: SlackBlock[];
}

export interface SlackRendering {
  /** One or more messages; the first is the one a card update replaces. */
  messages: SlackPayload[];
  /** Full tables too long to show inline: in memory (`content`) or streamed from Redis (`stream`). */
  files: ({ filename: string; title: string; content: string } | { filename: string; title: string; stream: TableFile })[];
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function mrkdwn(text: string): { type: 'mrkdwn'; text: string } {
  return { type: 'mrkdwn', text: clip(text, LIMITS.sectionText) };
}

/** Split long text on line boundaries into chunks that fit a section. */
export function chunkText(text: string, max = LIMITS.sectionText): string[] {
  if (text.length <= max) return [text];
  const out: string[] = [];
  let cur = '';
  for (const line of text.split('\n')) {
    const piece = line.length > max ? clip(line, max) : line;
    if (cur && cur.length + 1 + piece.length > max) {
      out.push(cur);
      cur = piece;
    } else cur = cur ? `${cur}\n${piece}` : piece;
  }
  if (cur) out.push(cur);
  return out;
}

function tableSections(title: string | undefined, lines: string[]): SlackBlock[] {
  const blocks: SlackBlock[] = [];
  // Code fences cost 8 characters per section; keep each chunk inside the limit with them.
  const chunks = chunkText(lines.join('\n'), LIMITS.sectionText - 8 - (title ? title.length + 1 : 0));
  chunks.forEach((chunk, i) => blocks.push({ type: 'section', text: mrkdwn(`${i === 0 && title ? `${title}\n` : ''}\`\`\`${chunk}\`\`\``) }));
  return blocks;
}

function renderBlock(block: Block, files: SlackRendering['files']): SlackBlock[] {
  switch (block.type) {
    case 'header':
      return [{ type: 'header', text: { type: 'plain_text', text: clip(block.text, LIMITS.header), emoji: true } }];
    case 'section':
      return chunkText(block.text).map((t) => ({ type: 'section', text: mrkdwn(t) }));
    case 'fields': {
      const out: SlackBlock[] = [];
      for (let i = 0; i < block.fields.length; i += LIMITS.fields) {
        out.push({ type: 'section', fields: block.fields.slice(i, i + LIMITS.fields).map((f) => ({ type: 'mrkdwn', text: clip(f, LIMITS.fieldText) })) });
      }
      return out;
    }
    case 'context':
      return [{ type: 'context', elements: [mrkdwn(block.text)] }];
    case 'progress':
      return [{ type: 'section', text: mrkdwn(`\`${progressBar(block.done, block.total)}\`  ${block.label}`) }];
    case 'divider':
      return [{ type: 'divider' }];
    case 'table': {
      const total = block.full?.rows ?? block.rows.length;
      if (total <= INLINE_TABLE_ROWS && block.rows.length <= INLINE_TABLE_ROWS) return tableSections(block.title, tableLines(block.columns, block.rows));
      const name = (block.name ?? block.title ?? 'table').replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '').toLowerCase() || 'table';
      const title = block.title ?? 'Full table';
      files.push(block.full ? { filename: `${name}.csv`, title, stream: block.full } : { filename: `${name}.csv`, title, content: tableCsv(block.columns, block.rows) });
      const shown = block.rows.slice(0, INLINE_TABLE_ROWS);
      return [
        ...tableSections(block.title, tableLines(block.columns, shown)),
        { type: 'context', elements: [mrkdwn(`Showing ${shown.length} of ${total} rows; the full table is attached as ${name}.csv.`)] },
      ];
    }
    case 'actions': {
      const out: SlackBlock[] = [];
      for (let i = 0; i < block.buttons.length; i += LIMITS.actions) {
        out.push({
          type: 'actions',
          elements: block.buttons.slice(i, i + LIMITS.actions).map((b) => ({
            type: 'button',
            action_id: b.action,
            text: { type: 'plain_text', text: clip(b.label, LIMITS.buttonText), emoji: true },
            value: b.value,
            ...(b.style ? { style: b.style } : {}),
            ...(b.confirm
              ? {
                  confirm: {
                    title: { type: 'plain_text', text: clip(b.confirm.title, 100) },
                    text: { type: 'mrkdwn', text: clip(b.confirm.text, 300) },
                    confirm: { type: 'plain_text', text: clip(b.confirm.confirm, 30) },
                    deny: { type: 'plain_text', text: clip(b.confirm.deny, 30) },
                  },
                }
              : {}),
          })),
        });
      }
      return out;
    }
  }
}

export function renderSlack(msg: Message): SlackRendering {
  const files: SlackRendering['files'] = [];
  const all = msg.blocks.flatMap((b) => renderBlock(b, files));
  const messages: SlackPayload[] = [];
  for (let i = 0; i < all.length; i += LIMITS.blocks) {
    const part = all.slice(i, i + LIMITS.blocks);
    const n = Math.floor(i / LIMITS.blocks);
    messages.push({ text: clip(n === 0 ? msg.text : `${msg.text} (continued, part ${n + 1})`, 3000), blocks: part });
  }
  if (!messages.length) messages.push({ text: clip(msg.text, 3000), blocks: [] });
  return { messages, files };
}

/** A card update must be one message: keep the first page and say that the rest follows. */
export function renderSlackSingle(msg: Message): SlackPayload {
  const r = renderSlack(msg);
  const first = r.messages[0]!;
  if (r.messages.length === 1) return first;
  return { text: first.text, blocks: [...first.blocks.slice(0, LIMITS.blocks - 1), { type: 'context', elements: [mrkdwn('More in the thread.')] }] };
}
