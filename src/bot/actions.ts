/**
 * Button clicks (Slack interactivity), by action id. The console has no buttons: every button
 * names the command that does the same, and that command reaches the same code.
 */
import type { Deps } from '../jobs/context.js';
import type { GroupMembers } from '../core/permissions.js';
import type { Conversation, MessageRef } from './surface.js';

export interface ActionContext {
  deps: Deps;
  user: string;
  /** The conversation of the clicked message (its thread). */
  conv: Conversation;
  /** The clicked message itself. */
  message?: MessageRef;
  value: string;
  groupMembers: GroupMembers;
  /** Only the clicking user sees this. */
  refuse(sentence: string): Promise<void>;
  /** Slack modal for input (reject reason); absent on surfaces without modals. */
  openModal?(view: Record<string, unknown>): Promise<void>;
}

export type ActionHandler = (ctx: ActionContext) => Promise<void>;

const actions = new Map<string, ActionHandler>();

export function registerAction(id: string, handler: ActionHandler): void {
  actions.set(id, handler);
}

export function actionFor(id: string): ActionHandler | undefined {
  return actions.get(id);
}

/** Modal submissions (callback_id -> handler with the submitted values). */
export type ViewHandler = (ctx: Omit<ActionContext, 'openModal'>, values: Record<string, string>) => Promise<void>;
const views = new Map<string, ViewHandler>();
export function registerView(callbackId: string, handler: ViewHandler): void {
  views.set(callbackId, handler);
}
export function viewFor(id: string): ViewHandler | undefined {
  return views.get(id);
}
