/**
 * Slack user groups (S…) named in permissions and approval policies, resolved through
 * usergroups.users.list and cached in Redis for every process.
 */
import type { WebClient } from '@slack/web-api';
import type { Runtime } from '../../runtime.js';
import { referencedUserGroups, type GroupMembers } from '../../core/permissions.js';

const TTL_SECONDS = 600;

export async function resolveUserGroups(rt: Runtime, client: WebClient | undefined): Promise<GroupMembers> {
  const ids = referencedUserGroups(rt.config);
  if (!ids.length || !client) return {};
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
    }
  }
  return out;
}
