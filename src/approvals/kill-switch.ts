/**
 * The kill switch's state: who paused and when, in Redis so every Ferry process (web and
 * workers) sees the same answer. The queues themselves are paused with BullMQ's Queue.pause()
 * (src/bot/handlers/pause.ts); this record is what the refusals and the removal job read.
 */
import type { Runtime } from '../runtime.js';
import { formatUtcTime } from './policy.js';
import { mention } from '../core/permissions.js';
import { refusal, type Refusal } from '../core/refusal.js';

export interface PauseState {
  by: string;
  /** Epoch milliseconds. */
  at: number;
}

function key(rt: Runtime): string {
  return rt.key('pause');
}

export async function pauseState(rt: Runtime): Promise<PauseState | null> {
  const raw = await rt.redis.get(key(rt));
  return raw ? (JSON.parse(raw) as PauseState) : null;
}

/** Sets the pause unless one is in force; returns the state in force afterwards and whether we set it. */
export async function setPause(rt: Runtime, by: string): Promise<{ state: PauseState; fresh: boolean }> {
  const state: PauseState = { by, at: rt.clock.now() };
  const ok = await rt.redis.set(key(rt), JSON.stringify(state), 'NX');
  if (ok) return { state, fresh: true };
  return { state: (await pauseState(rt)) ?? state, fresh: false };
}

export async function clearPause(rt: Runtime): Promise<PauseState | null> {
  const prev = await pauseState(rt);
  await rt.redis.del(key(rt));
  return prev;
}

/** "@bob paused Ferry at 14:32 UTC" */
export function pausedBy(state: PauseState): string {
  return `${mention(state.by)} paused Ferry at ${formatUtcTime(state.at)}`;
}

export function pausedRefusal(state: PauseState): Refusal {
  return refusal(`Ferry is paused: ${pausedBy(state)} (pause all); nothing new that changes anything runs until someone types resume all.`, 'paused');
}
