/**
 * The chat side of a workflow: its commands, its buttons and forms, and any gate every command
 * passes. The composition root (src/ferry.ts) lists them and builds one Router per process.
 */
import type { Deps } from '../jobs/context.js';
import type { Command, CommandName } from './grammar.js';
import type { CommandHandler, CommandTable, Gate } from './commands.js';
import type { ActionSpec, ViewSpec } from './actions.js';

export interface ChatWorkflow {
  name: string;
  commands?: CommandTable;
  /** Button action_id -> the command it stands for and its handler. */
  actions?: Record<string, ActionSpec>;
  /** Modal callback_id -> the same for form submissions. */
  views?: Record<string, ViewSpec>;
  gates?: Gate[];
}

export interface Router {
  readonly commands: ReadonlyMap<CommandName, CommandHandler<Command>>;
  readonly actions: ReadonlyMap<string, ActionSpec>;
  readonly views: ReadonlyMap<string, ViewSpec>;
  readonly gates: readonly Gate[];
}

/** What handleLine and handleClick need: the job side plus the router. */
export interface ChatDeps extends Deps {
  router: Router;
}

function add<K, V>(into: Map<K, V>, from: Record<string, unknown> | undefined, what: string, owner: string): void {
  for (const [k, v] of Object.entries(from ?? {})) {
    if (into.has(k as K)) throw new Error(`${what} "${k}" is claimed twice (again by ${owner})`);
    into.set(k as K, v as V);
  }
}

export function buildRouter(workflows: readonly ChatWorkflow[]): Router {
  const commands = new Map<CommandName, CommandHandler<Command>>();
  const actions = new Map<string, ActionSpec>();
  const views = new Map<string, ViewSpec>();
  for (const w of workflows) {
    add(commands, w.commands, 'command', w.name);
    add(actions, w.actions, 'button', w.name);
    add(views, w.views, 'form', w.name);
  }
  return { commands, actions, views, gates: workflows.flatMap((w) => w.gates ?? []) };
}
