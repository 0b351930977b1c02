/**
 * Redis that lost its data. An epoch key is written at first start; a process that saw one (or
 * saw operations) and then finds none is talking to a Redis that came back empty (AOF off, a
 * failover to an empty replica, FLUSHALL). It says so, writes a new epoch, and moves the
 * operation and approval request sequences past every id it knows of, so a new one never takes
 * the id an old card's buttons or an old thread still carry.
 *
 * A process's memory is not enough: when Redis lost its data and every process restarted too,
 * nobody would remember, and ids would start again at 1 while old cards and threads show 1, 2, 3.
 * So each process also keeps what it knows (the epoch, the highest ids) in a small file outside
 * Redis (FERRY_STATE_DIR, default ~/.local/state/ferry, next to the private Redis's data) and
 * reads it at start. Buttons are also stamped with the epoch (src/bot/slack/epoch-stamp.ts), so an
 * old button is refused even where no such file survived.
 */
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Runtime } from '../runtime.js';
import { runScript } from '../redis-scripts.js';
import { confirmedWrite } from '../redis-confirm.js';

interface EpochState {
  /** The epoch this process saw last. */
  known?: string;
  /** Highest operation id this process created or read. */
  maxOp: number;
  /** Highest approval request id this process created or read (their buttons and `approve <id>` carry it). */
  maxApproval: number;
  /** When this process last found the data gone. */
  lostAt?: number;
  /** Where this process keeps `known` and `maxOp` across restarts ('' when it cannot). */
  file: string;
  /** What the file holds now (written only when it changes). */
  saved: string;
  saving: boolean;
}

/** Where the id memory lives: FERRY_STATE_DIR, else ~/.local/state/ferry (the deployment files mount a volume there). */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.FERRY_STATE_DIR ?? path.join(env.HOME ?? os.homedir(), '.local', 'state', 'ferry');
}

/** One file per Ferry instance: its key prefix and its Redis (a private Redis's socket path changes per start). */
function stateFile(rt: Runtime): string {
  const dir = stateDir();
  const where = /\.sock\b|^redis\+unix:|^unix:/.test(rt.redisUrl) ? 'private' : rt.redisUrl.replace(/\/\/[^@/]*@/, '//');
  const hash = createHash('sha256').update(where).digest('hex').slice(0, 12);
  return path.join(dir, `ids-${rt.prefix.replace(/[^A-Za-z0-9_.-]/g, '_')}-${hash}.json`);
}

type Remembered = Pick<EpochState, 'known' | 'maxOp' | 'maxApproval'>;
const positive = (v: unknown): number => (typeof v === 'number' && v > 0 ? v : 0);

function load(rt: Runtime, file: string): Remembered {
  try {
    const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as { known?: unknown; maxOp?: unknown; maxApproval?: unknown };
    return { known: typeof raw.known === 'string' ? raw.known : undefined, maxOp: positive(raw.maxOp), maxApproval: positive(raw.maxApproval) };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') rt.log.warn({ file, err: String(e) }, 'could not read the operation id memory; starting without it');
    return { maxOp: 0, maxApproval: 0 };
  }
}

const remembered = (s: Remembered): string => JSON.stringify({ known: s.known, maxOp: s.maxOp, maxApproval: s.maxApproval });

/** Write the file (atomically, one write at a time, the latest state last). */
function persist(rt: Runtime, s: EpochState): void {
  if (!s.file || s.saving) return;
  // Other processes of this instance write the same file: never lower the highest id it holds.
  const there = fs.existsSync(s.file) ? load(rt, s.file) : { maxOp: 0, maxApproval: 0 };
  if (there.maxOp > s.maxOp) s.maxOp = there.maxOp;
  if (there.maxApproval > s.maxApproval) s.maxApproval = there.maxApproval;
  const body = remembered(s);
  if (body === s.saved) return;
  s.saving = true;
  const tmp = `${s.file}.${process.pid}.tmp`;
  void fs.promises
    .mkdir(path.dirname(s.file), { recursive: true, mode: 0o700 })
    .then(() => fs.promises.writeFile(tmp, body, { mode: 0o600 }))
    .then(() => fs.promises.rename(tmp, s.file))
    .then(
      () => {
        s.saved = body;
      },
      (e: unknown) => {
        rt.log.warn({ file: s.file, err: String(e) }, 'could not save the operation id memory (ids stay unique while this process lives)');
        s.file = '';
      },
    )
    .finally(() => {
      s.saving = false;
      persist(rt, s);
    });
}

const states = new WeakMap<Runtime, EpochState>();

function state(rt: Runtime): EpochState {
  let s = states.get(rt);
  if (!s) {
    const file = stateFile(rt);
    const was = load(rt, file);
    states.set(rt, (s = { ...was, file, saved: remembered(was), saving: false }));
  }
  return s;
}

/** Room above the highest id one process saw, for ids other processes issued just before the loss. */
const ID_MARGIN = 1000;

/** An approval request id this process created or read (see noteOpId). */
export function noteApprovalId(rt: Runtime, id: number): void {
  const s = state(rt);
  if (id > s.maxApproval) {
    s.maxApproval = id;
    persist(rt, s);
  }
}

export function noteOpId(rt: Runtime, id: number): void {
  const s = state(rt);
  if (id > s.maxOp) {
    s.maxOp = id;
    persist(rt, s);
  }
}

export interface EpochCheck {
  /** This call found the data gone (a Redis that came back empty), or another process just did. */
  lost: boolean;
  epoch: string;
}

/** Check (and write, the first time) the epoch; on a loss, write a new one and raise the id sequence. */
export async function checkEpoch(rt: Runtime): Promise<EpochCheck> {
  const s = state(rt);
  const key = rt.key('epoch');
  const cur = await rt.redis.get(key);
  if (cur && (!s.known || cur === s.known)) {
    s.known = cur;
    persist(rt, s);
    return { lost: false, epoch: cur };
  }
  // Missing, or replaced by another process that found the loss first.
  const lost = Boolean(s.known) || s.maxOp > 0 || s.maxApproval > 0;
  if (lost) s.lostAt = Date.now();
  const epoch = JSON.stringify({ id: randomUUID(), at: Date.now(), ...(lost ? { afterLoss: true } : {}) });
  // Confirmed (redis-confirm.ts): an epoch a failover lost would make the next check take the
  // new primary for a Redis that lost its data, and a raise it lost would give old ids out again.
  // Each write may be made again (a raise only raises; the epoch is set only where there is none).
  await confirmedWrite(rt.redis, 'the epoch', async () => {
    if (lost) {
      await runScript(rt.redis, 'raise-seq', [rt.key('op', 'seq')], [String(s.maxOp + ID_MARGIN)]);
      await runScript(rt.redis, 'raise-seq', [rt.key('approval', 'seq')], [String(s.maxApproval + ID_MARGIN)]);
    }
    if (!cur) await rt.redis.set(key, epoch, 'NX');
  });
  if (lost) rt.log.error({ knownEpoch: s.known ?? null, highestOpSeen: s.maxOp, highestApprovalSeen: s.maxApproval }, "Ferry's Redis lost its data (its epoch key is gone): operations, ledgers and approvals before it are unknown now");
  s.known = (await rt.redis.get(key)) ?? undefined;
  persist(rt, s);
  return { lost, epoch: s.known ?? '' };
}

/** The sentence for a thread whose operation vanished with the data. */
export function lostSentence(opId: number, title: string, hosts: string[]): string {
  const where = hosts.length ? ` Check ${hosts.join(', ')} by hand before anything else.` : '';
  return `Ferry's Redis lost its data: job ${opId} (${title}) can no longer be followed, and its record, plan, ledger and approvals are gone. Whatever it had already done stays done; nothing more is done by it.${where}`;
}

/**
 * For an answer that found no drain ledger: when this Redis came back empty at some point (its
 * epoch says so), the ledger may be one of the things it lost, and the user must hear that
 * rather than only "no drain ledger". '' when no loss is recorded.
 */
export async function dataLossNote(rt: Runtime, host: string): Promise<string> {
  const raw = await rt.redis.get(rt.key('epoch'));
  if (!raw) return '';
  let epoch: { at?: number; afterLoss?: boolean };
  try {
    epoch = JSON.parse(raw) as typeof epoch;
  } catch {
    return '';
  }
  if (!epoch.afterLoss) return '';
  const when = epoch.at ? new Date(epoch.at).toISOString().slice(0, 16).replace('T', ' ') + ' UTC' : 'an earlier time';
  return ` Ferry's Redis lost its data (found at ${when}); a drain of ${host} from before then is no longer known: check where its VMs are (status ${host}) and bring them home with migrate.`;
}
