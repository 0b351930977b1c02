/**
 * Status cards: one message per operation, updated in place no more than about once a
 * second however many hosts report. Any process may ask for a refresh; a Redis lock admits
 * one update per second and a deduplicated delayed job carries the trailing one, so the
 * last state is always shown and Slack calls per operation depend on its duration, not on
 * its number of hosts.
 */
import { message, section, who, type Message } from '../chat/messages.js';
import type { Deps } from './context.js';
import { FINISHED, type Operation } from './operations.js';
import type { Workflow } from './wiring.js';

export const CARD_INTERVAL_MS = 1000;

export async function renderCard(deps: Deps, op: Operation): Promise<Message> {
  const render = deps.wiring.cards.get(op.kind);
  if (!render) return { text: `${op.title}: ${op.status}`, blocks: [{ type: 'section', text: `*${op.title}*: ${op.status}` }] };
  return render(deps, op);
}

/**
 * Post the operation's card (idempotent). A command typed outside a thread gets its card as
 * the one top-level answer, and the card's thread becomes the operation's thread. Callers
 * start the work first and post the card beside it: what changed while the card was on its
 * way is shown by a refresh right after.
 */
export async function ensureCard(deps: Deps, opId: number): Promise<Operation | null> {
  const op = await deps.ops.get(opId);
  if (!op) return null;
  if (op.cardRef) return op;
  // Only one process may post the card.
  const claimed = await deps.rt.redis.set(deps.rt.key('card', opId, 'posting'), '1', 'PX', 30_000, 'NX');
  if (!claimed) return op;
  const shown = await renderCard(deps, op);
  const ref = await deps.outbox.post(op.conv, shown);
  if (!ref) return op;
  const conv = op.conv.threadTs ? op.conv : { ...op.conv, threadTs: ref.ts };
  const next = await deps.ops.patch(opId, { cardRef: ref, conv });
  const finished = FINISHED.includes(next.status);
  if (finished || JSON.stringify(await renderCard(deps, next)) !== JSON.stringify(shown)) await refreshCard(deps, opId, { force: finished });
  return next;
}

/** Post the card without waiting for Slack; failures are logged (the work goes on regardless). */
export function postCardBeside(deps: Deps, opId: number): void {
  void ensureCard(deps, opId).catch((e: unknown) => deps.rt.log.error({ opId, err: e }, 'could not post the status card'));
}

/**
 * The operation once its card is posted, so thread replies land under it. Waits while another
 * process posts the card; posts it itself if nobody holds the claim; gives up after `timeoutMs`
 * (Slack down: the reply then goes where the command was typed).
 */
export async function withCard(deps: Deps, opId: number, timeoutMs = 15_000): Promise<Operation | null> {
  const deadline = Date.now() + timeoutMs;
  let pause = 20;
  for (;;) {
    const op = await deps.ops.get(opId);
    if (!op || op.cardRef || op.conv.threadTs) return op;
    if (!(await deps.rt.redis.exists(deps.rt.key('card', opId, 'posting')))) return ensureCard(deps, opId);
    if (Date.now() > deadline) return op;
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(250, pause * 2);
  }
}

/**
 * Ask for the card to show the latest state. `force` (final states) skips the throttle but
 * still waits for the shared Slack budget.
 */
export async function refreshCard(deps: Deps, opId: number, opts: { force?: boolean; as?: Operation } = {}): Promise<void> {
  const { redis } = deps.rt;
  const lockKey = deps.rt.key('card', opId, 'lock');
  const finalKey = deps.rt.key('card', opId, 'final');
  if (!opts.force) {
    // The final state has been shown; late progress refreshes have nothing to add.
    if (await redis.exists(finalKey)) return;
    const got = await redis.set(lockKey, '1', 'PX', CARD_INTERVAL_MS, 'NX');
    if (!got) {
      const ttl = Math.max(50, await redis.pttl(lockKey));
      const slot = Math.floor((Date.now() + ttl) / CARD_INTERVAL_MS);
      // One trailing refresh per op per second, whoever asks.
      await deps.queues.cards
        .add('card', { opId }, { jobId: `card-${opId}-${slot}`, delay: ttl, removeOnComplete: true, removeOnFail: 100 })
        .catch(() => undefined);
      return;
    }
  } else {
    await redis.set(lockKey, '1', 'PX', CARD_INTERVAL_MS);
  }
  const op = opts.as ?? (await deps.ops.get(opId));
  const final = opts.force && op && FINISHED.includes(op.status);
  if (final) await redis.set(finalKey, '1', 'EX', 86_400);
  // The channel's "checking…" answer says how the operation ended, like its card.
  if (final && op.echoRef) await deps.outbox.update(op.conv, op.echoRef, echoMessage(op));
  if (!op?.cardRef) return;
  await deps.outbox.update(op.conv, op.cardRef, await renderCard(deps, op));
}

const ENDED: Record<string, string> = { succeeded: 'done', partial: 'partly done', failed: 'failed', cancelled: 'cancelled' };

/** The command's answer in the channel, once the operation has ended. */
export function echoMessage(op: Operation): Message {
  const word = ENDED[op.status] ?? op.status;
  const summary = op.summary ? `: ${op.summary}` : '';
  return message(`${op.title}: ${word}${summary}`, section(`${who(op.requester)} *${op.title}*: ${word} (job ${op.id})${summary}`));
}

/** The trailing refresh job: update only if nothing else did in the meantime. */
export async function cardJob(deps: Deps, opId: number): Promise<void> {
  await refreshCard(deps, opId);
}

export const cardsWorkflow: Workflow = {
  name: 'cards',
  jobs: { card: { queue: 'cards', handler: (deps, job) => cardJob(deps, (job.data as { opId: number }).opId) } },
};
