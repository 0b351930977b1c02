/**
 * Layers point one way. The chat layer (src/chat: message model, conversation, surface router)
 * is below both the bot (src/bot: grammar, handlers, Slack and console) and the jobs; nothing
 * under src/jobs, src/approvals, src/core, src/adapters or src/chat imports src/bot, and
 * src/chat imports neither bot nor jobs. Only the composition root wires them together.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '../src');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

/** Every relative import (static, type-only, dynamic, re-export) of a file, as a path under src/. */
function importsOf(file: string): string[] {
  const src = fs.readFileSync(file, 'utf8');
  const specs = [...src.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
  return specs.map((s) => path.relative(SRC, path.resolve(path.dirname(file), s)));
}

function violations(layers: string[], forbidden: string[]): string[] {
  return layers.flatMap((layer) =>
    sources(path.join(SRC, layer)).flatMap((f) =>
      importsOf(f)
        .filter((imp) => forbidden.some((x) => imp === x || imp.startsWith(`${x}/`)))
        .map((imp) => `${path.relative(SRC, f)} imports ${imp}`),
    ),
  );
}

describe('layers', () => {
  it('the scan sees imports (a file known to import the chat layer)', () => {
    expect(importsOf(path.join(SRC, 'jobs/cards.ts'))).toContain('chat/messages.js');
  });

  it('jobs, approvals, core, adapters and chat do not import the bot', () => {
    expect(violations(['jobs', 'approvals', 'core', 'adapters', 'chat'], ['bot'])).toEqual([]);
  });

  it('the chat layer imports neither the bot nor the jobs', () => {
    expect(violations(['chat'], ['bot', 'jobs', 'approvals'])).toEqual([]);
  });

  it('core and adapters stay below the jobs', () => {
    expect(violations(['core', 'adapters'], ['jobs', 'approvals'])).toEqual([]);
  });
});
