/** App Home: what the tab shows, and views.publish debounced per user through the shared budget. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebClient } from '@slack/web-api';
import { makeHarness, fastLabYaml, type Harness } from '../support/harness.js';
import { buildHome, homeOpened, homeView, publishHome, HOME_DEBOUNCE_MS } from '../../src/bot/slack/home.js';
import { renderText } from '../../src/bot/render/text.js';

const base = Date.UTC(2030, 8, 1, 8, 0);
let h: Harness;
const published: { user_id: string; view: { type: string; blocks: unknown[] } }[] = [];
const client = { views: { publish: async (args: { user_id: string; view: { type: string; blocks: unknown[] } }) => void published.push(args) } } as unknown as WebClient;

beforeAll(async () => {
  h = await makeHarness({ yaml: fastLabYaml(), clock: { now: () => base }, workers: false });
});
afterAll(async () => h.close());

describe('App Home', () => {
  it('shows running operations, approvals for this user, hosts in maintenance and upcoming windows', async () => {
    await h.run('patch window hyp01..hyp04 at 2030-09-02 22:00 Europe/Amsterdam for 4h note "KB1"');
    await h.deps.ops.create({ kind: 'drain', title: 'drain hyp07', requester: 'alice', conv: { surface: 'console', session: h.session, user: 'alice' }, hosts: ['hyp07'], params: {} });
    await h.rt.redis.set(h.rt.key('ledger', 'hyp07'), JSON.stringify({ host: 'hyp07', cluster: 'prod-a', opId: 1, requester: 'alice', createdAt: base, status: 'drained', vms: [{ name: 'web01' }] }));
    const text = renderText(await buildHome(h.deps, 'bob'));
    expect(text).toMatch(/Running operations\* \(1\)|Running operations \(1\)/);
    expect(text).toMatch(/drain hyp07/);
    expect(text).toMatch(/Hosts in maintenance\*? \(1\)/);
    expect(text).toMatch(/hyp07\s+2030-09-01 08:00 UTC\s+job 1\s+1/);
    expect(text).toMatch(/Upcoming patch windows\*? \(1\)/);
    expect(text).toMatch(/hyp01…hyp04\s+Mon 2 Sept? 22:00–02:00 Europe\/Amsterdam \(20:00–00:00 UTC\)\s+scheduled/);
    expect(text).toMatch(/Waiting for your approval\*? \(0\)/);
    const view = homeView(await buildHome(h.deps, 'bob'));
    expect(view.type).toBe('home');
    expect(view.blocks.length).toBeLessThanOrEqual(100);
  });

  it('publishes on open, then at most once per debounce interval per user, with one trailing publish', async () => {
    published.length = 0;
    await homeOpened(h.deps, 'U0BOB', client);
    expect(published).toHaveLength(1);
    expect(published[0]!.user_id).toBe('U0BOB');
    // A burst of changes inside the interval: no immediate publishes, one trailing job.
    for (let i = 0; i < 5; i++) expect(await publishHome(h.deps, 'U0BOB', { client })).toBe(false);
    expect(published).toHaveLength(1);
    const delayed = await h.deps.queues.cards.getDelayed();
    expect(delayed.filter((j) => j.name === 'home-publish' && (j.data as { user: string }).user === 'U0BOB')).toHaveLength(1);
    // Another user has their own interval.
    expect(await publishHome(h.deps, 'U0CAROL', { client })).toBe(true);
    expect(published).toHaveLength(2);
    await new Promise((r) => setTimeout(r, HOME_DEBOUNCE_MS + 50));
    expect(await publishHome(h.deps, 'U0BOB', { client })).toBe(true);
    expect(published).toHaveLength(3);
  });
});
