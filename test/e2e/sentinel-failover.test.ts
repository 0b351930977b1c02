/**
 * Redis Sentinel failover mid-drain, as deployed: a real primary and replica (AOF) and three
 * redis-sentinel processes on loopback (test/support/sentinel-cluster.ts); `ferry web` and two
 * `ferry worker` processes (src/main.ts, the Procfile) find the primary through the sentinels;
 * Slack is the local stand-in, commands are signed slash commands to the real receiver.
 * During one lab drain the primary fails over twice: once by killing it while its replica lags
 * behind (the replication stream held back: the primary alone has the latest migrations, and
 * they are lost with it), once by SENTINEL FAILOVER. A command typed right after the kill is
 * acked within Slack's 3 s (carried out once Redis is back, or answered that Redis is away). The
 * drain finishes; every VM is on exactly one host, on its planned target; none moved twice (the
 * audit trail); the card says what is true; `restore` brings them all home.
 */
import { afterAll, expect, it } from 'vitest';
import { makeHarness, uniquePrefix, type Harness } from '../support/harness.js';
import { drainLabYaml, hostState, migrationsPerVm, setHostVms } from '../support/drain-support.js';
import { slackHttpEnv, startFerry, type FerryProcess } from '../support/processes.js';
import { startSlackStandin, type SlackStandin } from '../support/slack-standin.js';
import { freePort, postSigned, slashBody } from '../support/slack.js';
import { startSentinelCluster, type SentinelCluster } from '../support/sentinel-cluster.js';
import { sentinelUrl } from '../../src/redis.js';
import { REDIS_DOWN_SENTENCE } from '../../src/redis-outage.js';
import { percents, vmStates } from '../../src/jobs/drain/steps.js';
import { readLedger } from '../../src/jobs/drain/ledger.js';
import { FINISHED } from '../../src/jobs/operations.js';
import { bound } from '../support/speed.js';
import { eventually } from '../support/wait.js';
import { labKeys, setLabFault } from '../../src/adapters/lab/control.js';
import { Redis } from 'ioredis';

const CLUSTER = ['hyp01', 'hyp02', 'hyp03', 'hyp04', 'hyp05', 'hyp06'];
const VMS = 20;
/** How long a migration from hyp03 waits to start while the killed node comes back. */
const SLOW_MS = 20_000;
const procs: FerryProcess[] = [];
let cluster: SentinelCluster | undefined;
let slack: SlackStandin | undefined;
let h: Harness | undefined;

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  await h?.close().catch(() => undefined);
  await slack?.close();
  await cluster?.close();
});

it('a drain survives SENTINEL FAILOVER and a killed primary: finishes, every VM on one host, none moved twice, restore brings them home', async () => {
  cluster = await startSentinelCluster();
  slack = await startSlackStandin();
  const port = await freePort();
  const prefix = uniquePrefix('failover');
  const yaml = drainLabYaml({ migrationMs: 2000, concurrency: 2 }).replace('operators: [alice, bob, carol, dave]', 'operators: [U0ALICE, U0BOB]').replace('approvers: [bob, carol]', 'approvers: [U0BOB]');
  // REDIS_URL is never used: with REDIS_SENTINELS set every connection goes through the sentinels.
  const env = slackHttpEnv({ redisUrl: 'redis://127.0.0.1:1', prefix, yaml, slackUrl: slack.url, port, extra: { REDIS_SENTINELS: cluster.sentinels } });
  // The test's own eyes (and the lab's preparation), through the sentinels too.
  h = await makeHarness({ yaml, prefix, workers: false, redisUrl: sentinelUrl(env)! });
  const names = await setHostVms(h.deps, 'hyp03', VMS, { memoryMiB: 1024 });
  const web = startFerry('web', env);
  const workers = [startFerry('worker', env), startFerry('worker', env)];
  procs.push(web, ...workers);
  await Promise.all([web.waitForLine(/Slack app listening/, bound(60_000)), ...workers.map((w) => w.waitForLine(/workers ready/, bound(60_000)))]);
  const logs = () => `\nweb:\n${web.output().slice(-3000)}\nworker 1:\n${workers[0]!.output().slice(-4000)}\nworker 2:\n${workers[1]!.output().slice(-4000)}`;
  const slash = async (text: string) => {
    const r = await postSigned(port, slashBody(text, { user: 'U0ALICE', responseUrl: `${slack!.responseUrl}/1` }));
    expect(r.status, `${text}: ${r.text}`).toBe(200);
    return r;
  };
  const newestOp = async () => (await h!.deps.ops.recent(1))[0];
  const texts = () => slack!.calls.filter((c) => c.method === 'chat.postMessage' || c.method === 'chat.update').map((c) => `${String(c.body.text ?? '')}\n${JSON.stringify(c.body.blocks ?? '')}`);

  await slash('drain hyp03');
  const op = await h.waitFor(async () => {
    const o = await newestOp();
    return o?.title === 'drain hyp03' && o.status === 'waiting' && o.params.stage === 'awaiting-start' ? o : undefined;
  }, 'drain hyp03 to be planned', 60_000);
  await slash(`start ${op.id}`);
  const movedCount = async () => Object.values(await vmStates(h!.deps, op.id)).filter((s) => s.state === 'moved').length;
  const movedAtLeast = (n: number) => h!.waitFor(async () => (await movedCount()) >= n, `${n} VMs moved`, 90_000);

  // 1. The primary killed while its replica lags behind (replication held back): a migration
  // the primary alone recorded is lost with it, as asynchronous replication allows. Ferry must
  // not count on what it wrote there unconfirmed.
  await movedAtLeast(2);
  // Mid-copy (progress reported, switch-over still to come): the next write to the lab's hosts is that switch-over.
  await h.waitFor(async () => Object.values(await percents(h!.deps, op.id)).some((p) => p > 0 && p < 80), 'a migration copying memory', 60_000);
  const primaryOnly = new Redis({ port: cluster.firstPrimaryPort, host: '127.0.0.1' });
  const onHyp03 = async () => (JSON.parse((await primaryOnly.get(labKeys(prefix).host('hyp03')))!) as { vms: unknown[] }).vms.length;
  try {
    const before = await onHyp03();
    cluster.holdReplication();
    await eventually(async () => (await onHyp03()) < before, 'a migration recorded on the primary alone', 60_000);
  } finally {
    primaryOnly.disconnect();
  }
  expect((await h.deps.ops.get(op.id))?.status, 'the drain is still running when the primary is killed').toBe('running');
  const { promoted } = await cluster.killPrimary();
  // A command typed right after the kill (the sentinels have not promoted the replica yet):
  // acked within Slack's 3 s, either carried out once Redis is back or answered in the ack that
  // Redis cannot be reached (src/redis-outage.ts), never left without an answer.
  const typed = await slash('drain hyp07');
  expect(typed.ms, 'ack right after the primary was killed').toBeLessThan(3000);
  const refusedInAck = typed.text.includes(REDIS_DOWN_SENTENCE);
  await promoted;
  // The killed node must be back (a replica again, seen by the sentinels) before SENTINEL
  // FAILOVER has somewhere to go, which takes one of the sentinels' 10 s rounds or more on a
  // loaded machine, while the drain goes on at the lab's pace. Meanwhile a migration from hyp03
  // waits SLOW_MS before it starts (the lab's slow fault), so the drain is still running, with
  // migrations in flight, when the failover comes.
  await setLabFault(h.rt.redis, prefix, 'hyp03', `slow:${SLOW_MS}`);
  await cluster.restartKilled();
  await setLabFault(h.rt.redis, prefix, 'hyp03', null);

  // 2. SENTINEL FAILOVER later in the same drain, migrations in flight.
  const mid = await h.deps.ops.get(op.id);
  expect(mid?.status, `the drain is still running at SENTINEL FAILOVER (${await movedCount()} of ${VMS} moved): ${mid?.summary}${logs()}`).toBe('running');
  await cluster.failover();

  const done = await h.waitFor(async () => {
    const o = await h!.deps.ops.get(op.id);
    return o && FINISHED.includes(o.status) ? o : undefined;
  }, 'the drain to finish', 150_000).catch((e: Error) => {
    throw new Error(`${e.message}${logs()}`);
  });
  expect(done.status, `${done.summary}${logs()}`).toBe('succeeded');

  // Real placement: every VM on exactly one host, the one the ledger planned; none moved twice.
  const ledger = (await readLedger(h.rt, 'hyp03'))!;
  expect(ledger.vms.map((v) => v.name).sort()).toEqual([...names].sort());
  const seen = new Map<string, string[]>();
  for (const host of CLUSTER) for (const v of (await hostState(h.rt, host)).vms) seen.set(v.name, [...(seen.get(v.name) ?? []), host]);
  for (const v of ledger.vms) expect(seen.get(v.name), v.name).toEqual([v.target]);
  const per = await migrationsPerVm(h.rt.redis, prefix);
  for (const n of names) expect(per.get(n), `${n} migrations`).toBe(1);
  // The card and the summary say what is true.
  expect(done.summary).toMatch(new RegExp(`^${VMS} moved, 0 skipped, 0 failed`));
  await h.waitFor(async () => texts().some((t) => t.includes(`${VMS} moved`)), 'the summary in the thread');
  // (The thread may hear that Redis was away and the drain resumes: true, and not a failure.)
  expect(texts().join('\n')).not.toMatch(/lost its data|failed to move|recorded as moved, but|\d+ failed\b(?<!\b0 failed)/);

  // The command typed during the outage was carried out, unless its ack said it was not.
  if (!refusedInAck) {
    await h.waitFor(async () => {
      const ops = await h!.deps.ops.recent(5);
      return ops.some((o) => o.title === 'drain hyp07');
    }, 'the drain hyp07 typed during the outage', 60_000);
  }

  // restore brings every VM home.
  await slash('restore hyp03');
  const restore = await h.waitFor(async () => {
    const o = await newestOp();
    return o && o.title.startsWith('restore hyp03') && FINISHED.includes(o.status) ? o : undefined;
  }, 'restore hyp03 to finish', 90_000);
  expect(restore.status, `${restore.summary}\n${texts().filter((t) => /home|drift|gone|stays/.test(t)).slice(-4).join('\n')}${logs()}`).toBe('succeeded');
  const home = new Set((await hostState(h.rt, 'hyp03')).vms.map((v) => v.name));
  for (const n of names) expect(home.has(n), n).toBe(true);
  const after = await migrationsPerVm(h.rt.redis, prefix);
  for (const n of names) expect(after.get(n), `${n} migrations after restore`).toBe(2);
}, bound(400_000));
