import { describe, expect, it } from 'vitest';
import { renderSlack, renderSlackSingle, LIMITS, INLINE_TABLE_ROWS } from '../../src/bot/render/slack.js';
import { renderText } from '../../src/bot/render/text.js';
import { summaryMessage, type HostSweepResult } from '../../src/jobs/workflows/find-stale-ports.js';
import type { Operation } from '../../src/jobs/operations.js';

function op(hosts: string[]): Operation {
  return { id: 7, kind: 'find-stale-ports', title: 't', requester: 'U1', conv: { surface: 'slack', channel: 'C1', user: 'U1' }, hosts, status: 'running', createdAt: 0, params: {} };
}

function sweep(hosts: number, portsPerHost: number, unreachable: number): { o: Operation; results: Record<string, HostSweepResult> } {
  const names = Array.from({ length: hosts }, (_, i) => `hyp${String(i + 1).padStart(2, '0')}`);
  const results: Record<string, HostSweepResult> = {};
  names.forEach((h, i) => {
    results[h] =
      i < unreachable
        ? { ok: false, error: `${h} did not answer (connection timed out after 10s) `.repeat(3) }
        : { ok: true, virtualPorts: portsPerHost, stale: Array.from({ length: portsPerHost }, (_, j) => ({ host: h, hbaWwpn: '5001438020015B00', wwpn: `C003FF${String(i).padStart(6, '0')}${String(j).padStart(4, '0')}`, wwnn: 'C003FF0000000000', fabric: '100000C0DD00A0A0' })) };
  });
  return { o: op(names), results };
}

function assertWithinLimits(blocks: Record<string, unknown>[]): void {
  expect(blocks.length).toBeLessThanOrEqual(LIMITS.blocks);
  for (const b of blocks) {
    const text = (b.text as { text?: string } | undefined)?.text;
    if (text) expect(text.length).toBeLessThanOrEqual(LIMITS.sectionText);
    if (b.type === 'actions') expect((b.elements as unknown[]).length).toBeLessThanOrEqual(LIMITS.actions);
    if (b.type === 'header') expect(((b.text as { text: string }).text).length).toBeLessThanOrEqual(LIMITS.header);
  }
}

describe('Slack rendering stays inside Block Kit limits', () => {
  it.each([
    [12, 1, 0],
    [99, 1, 3],
    [99, 6, 20],
    [99, 40, 99],
  ])('%i hosts × %i stale ports, %i unreachable', (hosts, ports, down) => {
    const { o, results } = sweep(hosts, ports, down);
    const r = renderSlack(summaryMessage(o, results, 1234));
    for (const m of r.messages) assertWithinLimits(m.blocks);
    const staleRows = (hosts - down) * ports;
    // Past the inline size the full table goes to a file, and the file has every row.
    if (staleRows > INLINE_TABLE_ROWS) {
      const file = r.files.find((f) => f.filename.startsWith('stale-ports'));
      expect(file && 'content' in file ? file.content.trim().split('\n') : []).toHaveLength(staleRows + 1);
    }
    const single = renderSlackSingle(summaryMessage(o, results, 1234));
    assertWithinLimits(single.blocks);
  });

  it('the summary names every stale WWPN in hex and the button counts them', () => {
    const { o, results } = sweep(3, 2, 1);
    const msg = summaryMessage(o, results, 1000);
    const text = renderText(msg);
    expect(text).toContain('4 stale ports on 2 hosts (of 2 swept); 1 host could not be swept.');
    expect(text).toContain('C003FF0000010000');
    expect(text).toContain('hyp01');
    expect(text).toContain('[Remove 4 stale ports…]  → type: remove stale ports hyp02,hyp03');
  });

  it('a table streamed from Redis shows its first rows and attaches the full file by reference, never its content', () => {
    const full = { key: 'ferry:op:7:csv:stale', rows: 4000, bytes: 240_000 };
    const rows = Array.from({ length: 60 }, (_, i) => [`h${i}`, `C003FF${String(i).padStart(10, '0')}`]);
    const r = renderSlack({ text: 't', blocks: [{ type: 'table', title: '*Stale ports*', columns: ['Host', 'WWPN'], rows, full }] });
    expect(r.files).toEqual([{ filename: 'stale-ports.csv', title: '*Stale ports*', stream: full }]);
    const texts = r.messages.flatMap((m) => m.blocks.map((b) => JSON.stringify(b)));
    expect(texts.join('\n')).toContain('Showing 60 of 4000 rows; the full table is attached as stale-ports.csv.');
    expect(renderText({ text: 't', blocks: [{ type: 'table', columns: ['Host', 'WWPN'], rows, full }] })).toContain('(showing 60 of 4000 rows)');
  });

  it('splits a very long section over several sections, never cutting a line', () => {
    const long = Array.from({ length: 400 }, (_, i) => `line ${i} ${'x'.repeat(20)}`).join('\n');
    const r = renderSlack({ text: 'long', blocks: [{ type: 'section', text: long }] });
    const texts = r.messages.flatMap((m) => m.blocks.map((b) => (b.text as { text: string }).text));
    expect(texts.length).toBeGreaterThan(1);
    expect(texts.join('\n')).toBe(long);
  });
});
