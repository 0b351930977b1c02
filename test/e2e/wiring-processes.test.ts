/**
 * The Procfile shape: `ferry web` and `ferry worker` as separate processes (src/main.ts) on one
 * Redis, Slack played by a local stand-in server and correctly signed requests. The worker
 * must run every job any process can enqueue: the job names are read from every enqueue site
 * in src/ and compared with the jobs the worker process reports it runs. And the App Home,
 * whose refresh is enqueued by the web process, is published again when a drain starts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { drainLabYaml, setHostVms } from '../support/drain-support.js';
import { slackHttpEnv, startFerry, type FerryProcess } from '../support/processes.js';
import { startSlackStandin, type SlackStandin } from '../support/slack-standin.js';
import { freePort, postSigned, slashBody } from '../support/slack.js';

const SRC = path.resolve(import.meta.dirname, '../../src');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

/** The end of the call starting at `open` (the index of its "("). */
function callText(src: string, open: number): string {
  let depth = 0;
  for (let i = open; i < src.length; i++) {
    if (src[i] === '(') depth++;
    else if (src[i] === ')' && --depth === 0) return src.slice(open, i + 1);
  }
  return src.slice(open);
}

/**
 * Helpers that enqueue the job name their caller passes (a parameter, not a literal): the scan
 * reads the name at their call sites instead. Value: the index of the name among the arguments.
 */
const FORWARDERS: Record<string, number> = { queueStep: 1 };

/**
 * Every job name any Ferry process can enqueue: the first argument of queues.<q>.add(...),
 * the `name:` of flow jobs and job schedulers, the name given to a forwarder. Constants
 * (REMOVAL_JOB) are resolved; an add() whose name is a variable outside a forwarder fails the scan.
 */
function enqueuedJobNames(): Set<string> {
  const files = sources(SRC).map((f) => ({ f, src: fs.readFileSync(f, 'utf8') }));
  const consts = new Map<string, string>();
  for (const { src } of files) for (const m of src.matchAll(/export const ([A-Z_]+) = '([a-z-]+)'/g)) consts.set(m[1]!, m[2]!);
  const resolve = (token: string, where: string): string => {
    const lit = /^'([a-z-]+)'$/.exec(token);
    if (lit) return lit[1]!;
    const c = consts.get(token);
    if (!c) throw new Error(`cannot resolve job name ${token} in ${where}`);
    return c;
  };
  const names = new Set<string>();
  for (const { f, src } of files) {
    const where = path.relative(SRC, f);
    for (const m of src.matchAll(/queues\.(?:ops|hosts|cards|timers|byName\([^)]*\))\s*\.add\(\s*('[a-z-]+'|[A-Z_]+|[a-z]\w*)/g)) {
      if (/^[a-z]\w*$/.test(m[1]!)) {
        // A name from a parameter: only inside a forwarder, whose callers are scanned below.
        const inForwarder = Object.keys(FORWARDERS).some((fn) => new RegExp(`function ${fn}\\(`).test(src.slice(0, m.index)));
        if (!inForwarder) throw new Error(`cannot resolve job name ${m[1]} in ${where}: add it to FORWARDERS if it forwards its caller's name`);
        continue;
      }
      names.add(resolve(m[1]!, where));
    }
    for (const [fn, at] of Object.entries(FORWARDERS)) {
      for (const m of src.matchAll(new RegExp(`\\b${fn}\\(`, 'g'))) {
        if (/function\s+$/.test(src.slice(0, m.index))) continue;
        const args = callText(src, m.index + m[0].length - 1).slice(1, -1).split(',');
        const token = args[at]?.trim();
        if (token) names.add(resolve(token, where));
      }
    }
    for (const m of src.matchAll(/queues\.(?:flow\s*\.add|\w+\s*\.upsertJobScheduler)\(/g)) {
      const call = callText(src, m.index + m[0].length - 1);
      for (const n of call.matchAll(/\bname:\s*('[a-z-]+'|[A-Z_]+)/g)) names.add(resolve(n[1]!, where));
    }
  }
  return names;
}

describe('web and worker as separate processes', () => {
  const procs: FerryProcess[] = [];
  let slack: SlackStandin;
  let web: FerryProcess;
  let worker: FerryProcess;
  let port: number;
  let h: Harness;

  beforeAll(async () => {
    slack = await startSlackStandin();
    const prefix = uniquePrefix('wiring');
    port = await freePort();
    const yaml = drainLabYaml().replace('operators: [alice, bob, carol, dave]', 'operators: [U0ALICE, U0BOB]').replace('approvers: [bob, carol]', 'approvers: [U0BOB]');
    const env = slackHttpEnv({ redisUrl: inject('redisUrl'), prefix, yaml, slackUrl: slack.url, port });
    // This process only prepares the lab (hyp04: two HA VMs, drainable): no workers, no Slack.
    h = await makeHarness({ yaml, prefix, workers: false });
    await setHostVms(h.deps, 'hyp04', 2);
    web = startFerry('web', env);
    worker = startFerry('worker', env);
    procs.push(web, worker);
    await Promise.all([web.waitForLine(/Slack app listening/, 90_000), worker.waitForLine(/workers ready/, 90_000)]);
  });

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await slack?.close();
    await h?.close();
  });

  it('the worker runs every job name any process can enqueue, the App Home\'s included', async () => {
    const line = await worker.waitForLine(/workers ready/);
    const reported = new Set((JSON.parse(line) as { jobs: string[] }).jobs);
    const enqueued = enqueuedJobNames();
    // The scan itself must see the jobs this test is about (and more than a handful).
    expect([...enqueued]).toEqual(expect.arrayContaining(['home-refresh', 'home-publish', 'card', 'drain-plan', 'sweep-host', 'approval-expiry']));
    const missing = [...enqueued].filter((n) => !reported.has(n));
    expect(missing, `jobs enqueued somewhere but not run by the worker: ${missing.join(', ')}`).toEqual([]);
  });

  it('the App Home opened in Slack is published again by the worker when a drain starts', async () => {
    const homes = () => slack.calls.filter((c) => c.method === 'views.publish' && c.body.user_id === 'U0ALICE');
    const waitFor = async (ok: () => boolean, what: string | (() => string), ms = 30_000): Promise<void> => {
      const deadline = Date.now() + ms;
      while (!ok()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}\nweb:\n${web.output().slice(-3000)}\nworker:\n${worker.output().slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const opened = JSON.stringify({
      token: 'legacy',
      team_id: 'T1',
      api_app_id: 'A1',
      type: 'event_callback',
      event_id: 'Ev0HOME1',
      event_time: Math.floor(Date.now() / 1000),
      event: { type: 'app_home_opened', user: 'U0ALICE', channel: 'D0ALICE', tab: 'home', event_ts: `${Date.now() / 1000}` },
    });
    expect((await postSigned(port, opened, { contentType: 'application/json' })).status).toBe(200);
    await waitFor(() => homes().length >= 1, 'the first views.publish (app_home_opened)');
    const first = homes().length;
    expect(JSON.stringify(homes()[0]!.body.view)).toContain('Nothing running.');

    expect((await postSigned(port, slashBody('drain hyp04', { user: 'U0ALICE' }))).status).toBe(200);
    // The web process enqueues home-refresh on the operation's status change; only the worker runs it.
    await waitFor(() => homes().length > first && homes().some((c) => JSON.stringify(c.body.view).includes('drain hyp04')), () => `the App Home to show the drain; posts: ${slack.calls.filter((c) => c.method !== 'views.publish').map((c) => `${c.method}: ${String(c.body.text)}`).join('\n')}`);
    expect(worker.output()).not.toMatch(/no handler for job/);
    expect(web.output()).not.toMatch(/no handler for job/);
  });
});
