/** help [command]: only what the caller may run. */
import type { HandlerOf } from '../commands.js';
import type { ChatWorkflow } from '../router.js';
import { COMMANDS, docFor } from '../grammar.js';
import { context, message, section } from '../../chat/messages.js';
import { visibleCommands, permissionName } from '../../core/permissions.js';
import { suggest } from '../../core/suggest.js';
import { refusal } from '../../core/refusal.js';

const SELECTORS = 'Selectors: `hyp03` · `hyp01..hyp12` · `hyp[01-12]` · `hyp01,hyp05` · `cluster:prod-a` · exclusions `!hyp07` or `except hyp07`.';

const helpCommand: HandlerOf<'help'> = async (ctx, cmd) => {
  const allowed = new Set<string>(visibleCommands({ user: ctx.user, channel: ctx.channel, config: ctx.deps.rt.config, groupMembers: ctx.groupMembers }));
  const mine = COMMANDS.filter((c) => allowed.has(permissionName(c.name)) || c.name === 'help');
  if (cmd.topic) {
    const doc = COMMANDS.find((c) => c.words.join(' ') === cmd.topic || c.name === cmd.topic || c.aliases?.some((a) => a.join(' ') === cmd.topic));
    if (!doc) {
      const hint = suggest(cmd.topic, COMMANDS.map((c) => c.words.join(' ')));
      await ctx.refuse(refusal(`There is no command "${cmd.topic}"${hint ? `; did you mean "${hint}"?` : '.'} "help" lists them.`));
      return;
    }
    const d = docFor(doc.name);
    const note = mine.includes(doc) ? '' : ' (you may not run this one)';
    await ctx.reply(message(`${d.syntax}: ${d.summary}`, section(`\`${d.syntax}\`${note}\n${d.summary}`), context(`Example: \`${d.example}\`${/selector/.test(d.syntax) ? ` · ${SELECTORS}` : ''}`)));
    return;
  }
  const lines = mine.map((c) => `\`${c.syntax}\` — ${c.summary}`);
  const hidden = COMMANDS.length - mine.length;
  await ctx.reply(
    message(
      'Ferry commands',
      section(`*What you can ask Ferry*\n${lines.join('\n')}`),
      context(`${SELECTORS}${hidden ? ` · ${hidden} more commands need a group you are not in.` : ''} · \`help <command>\` for one in detail.`),
    ),
  );
};

export const helpChat: ChatWorkflow = { name: 'help', commands: { help: helpCommand } };
