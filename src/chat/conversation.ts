/**
 * Where a conversation lives and how to talk into it. Workers hold a Conversation in the job
 * data and reach it through the SurfaceRouter, so any worker on any machine can report into a Slack
 * thread or a console session.
 */
import type { Message } from './messages.js';

export type Conversation =
  | { surface: 'slack'; channel: string; threadTs?: string; user: string; teamId?: string }
  | { surface: 'console'; session: string; user: string; threadTs?: string };

export interface MessageRef {
  channel: string;
  ts: string;
}

export interface Surface {
  /** Post into the conversation (in its thread when threadTs is set). null when delivery failed (logged). */
  post(conv: Conversation, msg: Message): Promise<MessageRef | null>;
  /** Replace a posted message (status cards). */
  update(conv: Conversation, ref: MessageRef, msg: Message): Promise<void>;
  /** A message only `user` sees. */
  ephemeral(conv: Conversation, msg: Message): Promise<void>;
}

export function inThread(conv: Conversation, ref: MessageRef | null): Conversation {
  return ref ? { ...conv, threadTs: conv.threadTs ?? ref.ts } : conv;
}

/**
 * The message an answer posted, from the conversation before and after `answer`: when the
 * command was typed outside a thread, the answer heads the new thread. null inside a thread
 * (the answer is one reply among others and is left as it is).
 */
export function answerRef(typed: Conversation, answered: Conversation): MessageRef | null {
  if (typed.threadTs || !answered.threadTs) return null;
  return { channel: answered.surface === 'slack' ? answered.channel : answered.session, ts: answered.threadTs };
}
