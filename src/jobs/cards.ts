/**
 * Status cards: one message per operation, updated in place no more than about once a
 * second however many hosts report. Any process may ask for a refresh; a Redis lock admits
 * one update per second and a deduplicated delayed job carries the trailing one, so the
 * last state is always shown and Slack calls per operation depend on its duration, not on
 * its number of hosts.
 */
import type { Message } from '../bot/messages.js';
import type { Deps } from './context.js';
import type { Operation } from './operations.js';
import type { Workflow } from './wiring.js';

export const CARD_INTERVAL_MS = 1000;

export async function renderCard(deps: Deps, op: Operation): Promise<Message> {
  const render = deps.wiring.cards.get(op.kind);
  if (!render) return { text: `${op.title}: ${op.status}`, blocks: [{ type: 'section', text: `*${op.title}*: ${op.status}` }] };
  return render(deps, op);
}

/** Post the operation's card into its thread if it has none yet (idempotent). */
export async function ensureCard(deps: Deps, opId: number): Promise<Operation | null> {
  const op = await deps.ops.get(opId);
  if (!op) return null;
  if (op.cardRef) return op;
  // Only one process may post the card.
  const claimed = await deps.rt.redis.set(deps.rt.key('card', opId, 'posting'), '1', 'PX', 30_000, 'NX');
  if (!claimed) return op;
  const ref = await deps.outbox.post(op.conv, await renderCard(deps, op));
  return ref ? deps.ops.patch(opId, { cardRef: ref }) : op;
}

/**
 * Ask for the card to show the latest state. `force` (final states) skips the throttle but
 * still waits for the shared Slack budget.
 */
export async function refreshCard(deps: Deps, opId: number, opts: { force?: boolean } = {}): Promise<void> {
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
  const op = await deps.ops.get(opId);
  if (opts.force && op && ['succeeded', 'partial', 'failed', 'cancelled'].includes(op.status)) await redis.set(finalKey, '1', 'EX', 86_400);
  if (!op?.cardRef) return;
  await deps.outbox.update(op.conv, op.cardRef, await renderCard(deps, op));
}

/** The trailing refresh job: update only if nothing else did in the meantime. */
export async function cardJob(deps: Deps, opId: number): Promise<void> {
  await refreshCard(deps, opId);
}

export const cardsWorkflow: Workflow = {
  name: 'cards',
  jobs: { card: { queue: 'cards', handler: (deps, job) => cardJob(deps, (job.data as { opId: number }).opId) } },
};
