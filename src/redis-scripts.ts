/**
 * Ferry's atomic Redis commands, one Lua file each in src/lua (BullMQ's layout), defined on a
 * connection with ioredis defineCommand (EVALSHA, loaded again by ioredis after a restart or
 * failover). A file's first lines say how many keys it takes (`-- keys: N`) and whether it is
 * fenced (`-- fenced`): src/lua/include/fence.lua is put in front of it, and it takes
 * the job's lock key and token after its own keys and arguments.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

export type ScriptName =
  | 'approval-cas'
  | 'approval-create'
  | 'audit-append'
  | 'fenced-hset'
  | 'fenced-set'
  | 'hash-replace-if'
  | 'host-lock-acquire'
  | 'host-lock-refresh'
  | 'inflight-beat'
  | 'inflight-claim'
  | 'ledger-write'
  | 'mutex-unlock'
  | 'op-create'
  | 'outbox-claim'
  | 'outbox-done'
  | 'outbox-enqueue'
  | 'outbox-retry'
  | 'outbox-update'
  | 'raise-seq'
  | 'reserve-moves'
  | 'reserve-release'
  | 'reserve-settle'
  | 'slack-block'
  | 'slack-reserve'
  | 'user-rate'
  | 'vsphere-enter-cas';

/** The error src/lua/include/fence.lua answers a run that lost its job with. */
export const FENCE_ERROR = 'FERRY_FENCED';


export interface ScriptDef {
  name: ScriptName;
  keys: number;
  fenced: boolean;
  lua: string;
}

/** tsx and vitest run from src/, the build from dist/: the .lua files sit beside this module in both. */
const DIR = new URL('./lua/', import.meta.url);

let cache: Map<ScriptName, ScriptDef> | undefined;

/** Every script, read once from disk; a file without its `-- keys:` line is an error at start. */
export function scriptDefs(): Map<ScriptName, ScriptDef> {
  if (cache) return cache;
  const out = new Map<ScriptName, ScriptDef>();
  const prelude = readFileSync(new URL('include/fence.lua', DIR), 'utf8');
  for (const file of readdirSync(DIR).filter((f) => f.endsWith('.lua')).sort()) {
    const name = file.slice(0, -4) as ScriptName;
    const text = readFileSync(new URL(file, DIR), 'utf8');
    const keys = /^-- keys: (\d+)$/m.exec(text);
    if (!keys) throw new Error(`src/lua/${file} does not say how many keys it takes (-- keys: N)`);
    const fenced = /^-- fenced$/m.test(text);
    out.set(name, { name, keys: Number(keys[1]) + (fenced ? 1 : 0), fenced, lua: fenced ? prelude + text : text });
  }
  cache = out;
  return out;
}

type Command = (...args: (string | number)[]) => Promise<unknown>;

/** Define every script on this connection. */
export function defineScripts(redis: Redis): void {
  for (const d of scriptDefs().values()) redis.defineCommand(`ferry:${d.name}`, { numberOfKeys: d.keys, lua: d.lua });
}

/** Run one script; a fenced one takes the lock key and token last (see fencedEval). */
export async function runScript(redis: Redis, name: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
  // Looked up on the connection every time, not remembered per object: the runtime's
  // connection (redis.ts selfHealing) can be a new client under the same object after a failover.
  const lookup = () => (redis as unknown as Record<string, Command | undefined>)[`ferry:${name}`];
  let cmd = lookup();
  if (!cmd) {
    defineScripts(redis);
    cmd = lookup();
  }
  if (!cmd) throw new Error(`no Redis script ${name} (src/lua/${name}.lua)`);
  return cmd.call(redis, ...keys, ...args);
}
