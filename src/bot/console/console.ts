/**
 * `ferry console`: a local terminal chat with Ferry's grammar, rendering the same messages and
 * card updates as text and taking approvals by typed command. It has an identity (config
 * console.user, else the OS user) and can act as someone else for one line ("as bob approve
 * 12") or from then on ("as bob"), so four eyes can be shown without Slack.
 *
 * When stdin is not a terminal it reads one command per line, waits for each line's work to
 * finish (or to wait for a decision), and exits after the last.
 */
import readline from 'node:readline';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Ferry } from '../../ferry.js';
import { handleLine } from '../commands.js';
import { message } from '../../chat/messages.js';
import { renderText } from '../render/text.js';
import { ConsoleFeed, consoleStream } from './surface.js';
import { inThread, type Conversation } from '../../chat/conversation.js';

export interface ConsoleOptions {
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
  interactive?: boolean;
  user?: string;
  /** How long a non-interactive run waits for one line's work at most. */
  lineTimeoutMs?: number;
}

const AS = /^as\s+([A-Za-z0-9._-]{1,40})(?:\s+(.*))?$/i;

export class FerryConsole {
  readonly session = randomBytes(6).toString('hex');
  private user: string;
  private readonly out: NodeJS.WritableStream;
  private feed: ConsoleFeed | undefined;
  private readonly lastUpdate = new Map<string, string>();
  private rl: readline.Interface | undefined;
  private interactive = false;

  constructor(
    private readonly deps: Ferry,
    private readonly opts: ConsoleOptions = {},
  ) {
    this.user = opts.user ?? deps.rt.config.console.user ?? os.userInfo().username;
    this.out = opts.output ?? process.stdout;
  }

  private print(text: string): void {
    const line = text.endsWith('\n') ? text : `${text}\n`;
    if (this.interactive && this.rl) {
      // Messages arrive while the user may be typing: print above the prompt, then redraw it.
      readline.clearLine(this.out, 0);
      readline.cursorTo(this.out, 0);
      this.out.write(line);
      this.rl.prompt(true);
    } else this.out.write(line);
  }

  private indent(text: string, mark: string): string {
    return text
      .split('\n')
      .map((l, i) => (i === 0 ? `${mark} ${l}` : `  ${l}`))
      .join('\n');
  }

  async subscribe(): Promise<void> {
    this.feed = new ConsoleFeed(this.deps.rt.newConnection(), consoleStream(this.deps.rt.prefix, this.session), (ev) => {
      if (ev.kind === 'marker') return;
      if (ev.kind === 'post') this.print(this.indent(renderText(ev.message), ev.threadTs ? '  │' : 'ferry ›'));
      else if (ev.kind === 'ephemeral') this.print(this.indent(renderText(ev.message), `(only @${ev.user})`));
      else {
        const text = renderText(ev.message);
        const key = `${ev.ref.channel}:${ev.ref.ts}`;
        if (this.lastUpdate.get(key) === text) return;
        this.lastUpdate.set(key, text);
        this.print(this.indent(text, '  ↻'));
      }
    });
    await this.feed.start();
  }

  /** Run one line as the current (or an `as`) identity. */
  async runLine(raw: string): Promise<void> {
    const line = raw.trim();
    if (!line) return;
    if (line === 'exit' || line === 'quit') return;
    let user = this.user;
    let text = line;
    const as = AS.exec(line);
    if (as) {
      if (!as[2]) {
        this.user = as[1]!;
        this.print(`You are now @${this.user}.`);
        return;
      }
      user = as[1]!;
      text = as[2];
    }
    // A terminal already shows what was typed; scripts and `as` lines say who spoke.
    if (!this.interactive || user !== this.user) this.print(`@${user} › ${text}`);
    const conv: Conversation = { surface: 'console', session: this.session, user };
    await handleLine(this.deps, {
      text,
      user,
      conv,
      channel: 'console',
      refuse: (r) => this.deps.outbox.ephemeral(conv, message(r.sentence)),
      answer: async (msg) => inThread(conv, await this.deps.outbox.post(conv, msg)),
    });
  }

  /**
   * Operations of this session that are neither finished nor waiting for a person. Any of
   * them counts, not only those the last line created: `start 41` sets an older one going.
   */
  private async busy(): Promise<boolean> {
    const active = await this.deps.ops.active();
    return active.some((op) => op.conv.surface === 'console' && op.conv.session === this.session && op.status !== 'waiting');
  }

  private async settle(): Promise<void> {
    const deadline = Date.now() + (this.opts.lineTimeoutMs ?? 15 * 60_000);
    // Give the worker a moment to pick the job up, then wait for it.
    await new Promise((r) => setTimeout(r, 150));
    while ((await this.busy()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    // Let the last messages arrive before the next prompt.
    await new Promise((r) => setTimeout(r, 300));
  }

  async run(): Promise<void> {
    await this.subscribe();
    const input = this.opts.input ?? process.stdin;
    const interactive = this.opts.interactive ?? Boolean((input as NodeJS.ReadStream).isTTY);
    const rl = readline.createInterface({ input, output: interactive ? this.out : undefined, terminal: interactive });
    this.rl = rl;
    this.interactive = interactive;
    if (interactive) {
      this.print(`Ferry console · ${this.deps.rt.configSource} · ${this.deps.rt.inventory.hosts.length} hosts · you are @${this.user} ("as <name>" to switch, "help", "exit")`);
      rl.setPrompt(`@${this.user} › `);
      rl.prompt();
    }
    for await (const raw of rl) {
      if (raw.trim() === 'exit' || raw.trim() === 'quit') break;
      try {
        await this.runLine(raw);
      } catch (e) {
        this.print(`error: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (!interactive) await this.settle();
      else {
        rl.setPrompt(`@${this.user} › `);
        rl.prompt();
      }
    }
    rl.close();
  }

  async close(): Promise<void> {
    await this.feed?.stop();
  }
}
