/**
 * Why Ferry will not do something, the one shape every command, button, gate and workflow
 * decision refuses with (kubectl drain's plain refusals): one sentence that says what was not
 * done and why, and names the way past it where there is one ("…until someone types resume
 * all", "add save-non-ha"). Nothing changed when a refusal is given.
 */
export interface Refusal {
  readonly refused: true;
  readonly sentence: string;
  /** Machine-readable reason, for logs, audit and callers that branch on it. */
  readonly code?: string;
}

export function refusal(sentence: string, code?: string): Refusal {
  return code === undefined ? { refused: true, sentence } : { refused: true, sentence, code };
}

export function isRefusal(x: unknown): x is Refusal {
  return typeof x === 'object' && x !== null && (x as Refusal).refused === true && typeof (x as Refusal).sentence === 'string';
}

/** Where a refusal is said: the caller's own reply (ephemeral in Slack, the console line). */
export type RefuseSink = (r: Refusal) => Promise<void>;
