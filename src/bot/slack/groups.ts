/**
 * Slack user groups (S…) named in permissions and approval policies, resolved through
 * usergroups.users.list and cached in Redis for every process.
 */
import type { WebClient } from '@slack/web-api';
import type { Runtime } from '../../runtime.js';
import { referencedUserGroups, type GroupMembers } from '../../core/permissions.js';

const TTL_SECONDS = 600;

/** Each process also keeps what it read for this long, so a command's permission is decided without a Redis round trip. */
const LOCAL_MS = 60_000;
const local = new WeakMap<Runtime, { at: number; members: GroupMembers }>();

export async function resolveUserGroups(rt: Runtime, client: WebClient | undefined): Promise<GroupMembers> {
  const ids = referencedUserGroups(rt.config);
  if (!ids.length || !client) return {};
  const kept = local.get(rt);
  if (kept && Date.now() - kept.at < LOCAL_MS) return kept.members;
  const { members, complete } = await readUserGroups(rt, client, ids);
  // A group Slack could not resolve is asked again next time, as before.
  if (complete) local.set(rt, { at: Date.now(), members });
  return members;
}

async function readUserGroups(rt: Runtime, client: WebClient, ids: string[]): Promise<{ members: GroupMembers; complete: boolean }> {
  let complete = true;
  const out: Record<string, string[]> = {};
  for (const id of ids) {
    const key = rt.key('slack', 'usergroup', id);
    const cached = await rt.redis.get(key);
    if (cached) {
      out[id] = JSON.parse(cached) as string[];
      continue;
    }
    try {
      const res = await client.usergroups.users.list({ usergroup: id });
      out[id] = res.users ?? [];
      await rt.redis.set(key, JSON.stringify(out[id]), 'EX', TTL_SECONDS);
    } catch (e) {
      // Unresolvable group: no members (fail closed), and say why in the logs.
      rt.log.error({ usergroup: id, err: e }, 'could not resolve Slack user group');
      out[id] = [];
      complete = false;
    }
  }
  return { members: out, complete };
}
