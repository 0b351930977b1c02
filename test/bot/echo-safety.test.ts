/**
 * What Ferry echoes into a channel (issue 13, item 8): user text as typed, never as live markup;
 * configuration details (SSH key path, vCenter endpoint and user) never. Through the real
 * command path; the Slack rendering of what was posted is checked.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makeHarness, fastLabYaml, type Harness } from '../support/harness.js';
import { renderSlack } from '../../src/bot/render/slack.js';
import type { Message } from '../../src/chat/messages.js';

const base = Date.UTC(2030, 5, 10, 12, 0);
const keyPath = path.join(os.tmpdir(), 'ferry-secret-dir', 'id_ed25519_ops');
let h: Harness;

beforeAll(async () => {
  const yaml = fastLabYaml().replace(
    'clusters:\n',
    `clusters:\n  kvm:\n    adapter: libvirt\n    hosts: [kvm01]\n    ssh: {user: root, privateKeyPath: ${keyPath}, connectTimeout: 2s, addresses: {kvm01: 127.0.0.1}}\n  esx:\n    adapter: vsphere\n    hosts: [esx01]\n    vsphere: {url: "http://127.0.0.1:9/sdk", user: "svc-ferry@vsphere.local", password: secret, requestTimeout: 2s}\n`,
  );
  h = await makeHarness({ yaml, clock: { now: () => base } });
});
afterAll(async () => h.close());

const posted = (): Message[] => h.events.map((e) => e.message);
const slackJson = () => JSON.stringify(posted().map((m) => renderSlack(m)));

it('a patch-window note is shown as typed: <!channel> and disguised links do not act', async () => {
  await h.run('patch window hyp01..hyp02 at 2030-06-12 22:00 UTC for 2h note "<!channel> see <http://evil.example|the KB> & more"');
  await h.waitFor(async () => h.transcript().includes('Note:'), 'the window confirmation');
  const json = slackJson();
  expect(json).toContain('&lt;!channel&gt; see &lt;http://evil.example|the KB&gt; &amp; more');
  expect(json).not.toContain('<!channel>');
  expect(json).not.toContain('<http://evil.example');
  // The console shows it as typed.
  expect(h.transcript()).toContain('<!channel> see <http://evil.example|the KB> & more');
});

it('hosts kvm01 does not show the SSH private-key path; vCenter endpoint and user stay out of errors', async () => {
  expect(fs.existsSync(keyPath)).toBe(false);
  await h.run('hosts kvm01');
  await h.run('hosts esx01');
  await h.waitFor(async () => /kvm01/.test(h.transcript()) && /esx01/.test(h.transcript()) && posted().length >= 4, 'both answers', 30_000);
  const all = `${h.transcript()}\n${slackJson()}`;
  expect(all).not.toContain(keyPath);
  expect(all).not.toContain('ferry-secret-dir');
  expect(all).not.toContain('127.0.0.1:9');
  expect(all).not.toContain('svc-ferry@vsphere.local');
});
