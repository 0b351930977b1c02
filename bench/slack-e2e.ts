/**
 * End to end, as a user sees it: from the signed `/ferry` request to the last Slack message,
 * with web and worker as separate processes (`src/main.ts web|worker`), a private Redis, and
 * Slack's Web API played by a local stand-in that enforces Slack's rate limits (429 with
 * Retry-After) and Block Kit limits (test/support/slack-standin.ts). The lab answers each call
 * in 200 ms; sweepConcurrency is 16.
 *   1. 99 hosts in a quiet channel: final report vs the ideal ⌈99/16⌉ × 200 ms;
 *   2. 20 commands at once from 20 users in 5 channels: acks, 429s, refusals in the ack, sent
 *      and timed by a separate plain-node client (bench/burst-client.mjs; signed and connected
 *      before the clock starts), first on the freshly started (cold) web process; then the ack
 *      path alone: a sweep, a refusal and help, one command at a time (10 each); then the same
 *      burst again after 200 single commands (warm, as a production web process is);
 *   3. 10,000 hosts (one lab cluster h[00001-10000], selectorMax raised): final report vs the
 *      ideal ⌈10000/16⌉ × 200 ms, Slack calls per sweep, peak RSS of web and worker.
 * `npm run bench -- slack-e2e` runs it alone; FERRY_BENCH_SKIP_10K=1 skips the third part,
 * FERRY_BENCH_ONLY_10K=1 the first two, FERRY_BENCH_ONLY_ACK=1 runs only the second. After the 10,000-host sweep, 4: removal of ~100 stale ports
 * from approval to summary (FERRY_BENCH_SKIP_REMOVAL=1 skips it, FERRY_BENCH_ONLY_REMOVAL=1 skips
 * the 10,000-host sweep before it).
 */
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { listening } from '../test/support/net.js';
import { startPrivateRedis } from '../test/support/redis-server.js';
import { runAsScript } from './support.js';
import { startSlackStandin, type SlackStandin, type StandinCall } from '../test/support/slack-standin.js';
import { SIGNING_SECRET, freePort, postSigned, sign, slashBody } from '../test/support/slack.js';
import { LAB_DEFAULT_YAML } from '../src/config/lab-default.js';

const LATENCY_MS = 200;
const CONCURRENCY = 16;
/** Commands of each kind in the one-at-a-time ack measurement. */
const ISOLATED_ROUNDS = 10;
const ROOT = path.join(import.meta.dirname, '..');

const YAML_99 = `${LAB_DEFAULT_YAML.replace('latencyMs: 150', `latencyMs: ${LATENCY_MS}`)}limits:\n  sweepConcurrency: ${CONCURRENCY}\n`;
const YAML_10K = `timezone: UTC
lab:
  seed: 42
  latencyMs: ${LATENCY_MS}
limits:
  selectorMax: 10000
  sweepConcurrency: ${CONCURRENCY}
clusters:
  big:
    adapter: lab
    hosts: ["h[00001-10000]"]
groups:
  operators: [U0ALICE]
  approvers: [U0BOB]
`;

interface Ferry {
  port: number;
  procs: { web: ChildProcess; worker: ChildProcess };
  /** Peak resident set (VmHWM) of each process so far, MiB. */
  peakRss(): { web: number; worker: number };
  stop(): Promise<void>;
}

/** The Procfile's command for a process type, split into words. */
function procfileCommand(mode: string): string[] {
  const line = fs.readFileSync(path.join(ROOT, 'Procfile'), 'utf8').split('\n').find((l) => l.startsWith(`${mode}:`));
  if (!line) throw new Error(`the Procfile has no ${mode} line`);
  return line.slice(mode.length + 1).trim().split(/\s+/);
}

function vmHwmMiB(pid: number | undefined): number {
  if (!pid) return NaN;
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) / 1024;
}

async function waitPort(port: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await listening(port)) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startFerry(yaml: string, redisUrl: string, slack: SlackStandin, prefix: string): Promise<Ferry> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-'));
  const config = path.join(dir, 'ferry.yml');
  fs.writeFileSync(config, yaml);
  const port = await freePort();
  const env = {
    ...process.env,
    SLACK_BOT_TOKEN: 'xoxb-bench',
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_API_URL: slack.url,
    PORT: String(port),
    REDIS_URL: redisUrl,
    FERRY_CONFIG: config,
    FERRY_PREFIX: prefix,
    LOG_LEVEL: 'warn',
  };
  // As deployed: the Procfile's command lines (node flags included), from the compiled dist.
  // FERRY_BENCH_NODE_OPTIONS: extra node flags for both (e.g. --trace-gc).
  const extra = (process.env.FERRY_BENCH_NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean);
  const start = (mode: 'web' | 'worker') => {
    const [node, ...args] = procfileCommand(mode);
    if (node !== 'node') throw new Error(`the Procfile's ${mode} line does not start with node`);
    return spawn(process.execPath, [...extra, ...args], { cwd: ROOT, env, stdio: ['ignore', process.env.FERRY_BENCH_VERBOSE ? 'inherit' : 'ignore', 'inherit'] });
  };
  const procs = { web: start('web'), worker: start('worker') };
  await waitPort(port);
  return {
    port,
    procs,
    peakRss: () => ({ web: vmHwmMiB(procs.web.pid), worker: vmHwmMiB(procs.worker.pid) }),
    async stop() {
      for (const p of Object.values(procs)) {
        if (p.exitCode !== null) continue;
        p.kill('SIGTERM');
        await new Promise((r) => p.once('exit', r));
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const channelOf = (c: StandinCall) => String(c.body.channel ?? c.body.channel_id ?? '');
const isSummary = (c: StandinCall, n: number) => c.method === 'chat.postMessage' && c.status === 200 && (String(c.body.text).includes(`(of ${n} swept)`) || String(c.body.text).includes(`No stale ports on ${n} host`));

async function until<T>(probe: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One sweep from the signed request: when the summary and the final card arrived, and every Slack call of the channel. */
async function sweep(f: Ferry, slack: SlackStandin, selector: string, n: number, channel: string, timeoutMs: number) {
  const t0 = Date.now();
  const ack = await postSigned(f.port, slashBody(`find stale ports ${selector}`, { channel, responseUrl: `${slack.responseUrl}x` }));
  const summary = await until(() => slack.calls.find((c) => c.at >= t0 && channelOf(c) === channel && isSummary(c, n)), `the ${n}-host summary`, timeoutMs);
  const finalCard = await until(
    () => slack.calls.find((c) => c.at >= t0 && c.method === 'chat.update' && c.status === 200 && channelOf(c) === channel && JSON.stringify(c.body.blocks ?? '').includes('done in')),
    'the final card',
    30_000,
  );
  // Anything that still trails (a file upload) has had its chance once the final card is in.
  await new Promise((r) => setTimeout(r, 1500));
  const calls = slack.calls.filter((c) => c.at >= t0 && (channelOf(c) === channel || c.method === 'upload'));
  const last = Math.max(...calls.map((c) => c.at));
  return { ackMs: ack.ms, reportMs: summary.at - t0, lastMs: last - t0, finalCardMs: finalCard.at - t0, calls };
}

/**
 * 4: removal of about 100 stale ports (typed by one user, approved by another), from the
 * approval to the final summary, against the lab's time for its calls: each port is re-checked
 * (an NPIV read) and removed, one port after another, 200 ms a call.
 */
async function removal(f: Ferry, slack: SlackStandin): Promise<Record<string, number>> {
  const channel = 'C0REMOVE';
  const t0 = Date.now();
  const ack = await postSigned(f.port, slashBody('remove stale ports h00001..h00200', { user: 'U0ALICE', channel, responseUrl: `${slack.responseUrl}r` }));
  if (ack.text) console.log(`removal command answered in the ack: ${ack.text}`);
  const text = (c: StandinCall) => `${String(c.body.text)} ${JSON.stringify(c.body.blocks ?? '')}`;
  const card = await until(() => slack.calls.find((c) => c.at >= t0 && channelOf(c) === channel && c.method === 'chat.postMessage' && /^Approval request \d+: remove \d+ stale ports?/.test(String(c.body.text))), 'the removal request', 120_000).catch((e: unknown) => {
    for (const c of slack.calls.filter((x) => x.at >= t0)) console.error(c.method, c.status, text(c).slice(0, 300));
    throw e;
  });
  const [, request, ports] = /^Approval request (\d+): remove (\d+) stale ports?/.exec(String(card.body.text))!;
  const n = Number(ports);
  const t1 = Date.now();
  await postSigned(f.port, slashBody(`approve ${request}`, { user: 'U0BOB', channel, responseUrl: `${slack.responseUrl}a` }));
  const done = await until(() => slack.calls.find((c) => c.at >= t1 && channelOf(c) === channel && c.method === 'chat.postMessage' && String(c.body.text).startsWith(`Removal finished (request ${request},`)), 'the removal summary', 600_000);
  const ms = done.at - t1;
  const lab = n * 2 * LATENCY_MS;
  const posts = slack.calls.filter((c) => c.at >= t1 && c.at <= done.at && channelOf(c) === channel && c.method === 'chat.postMessage').length;
  const updates = slack.calls.filter((c) => c.at >= t1 && c.at <= done.at && channelOf(c) === channel && c.method === 'chat.update').length;
  console.log(
    `removal of ${n} stale ports: approval to summary ${ms} ms against the lab's ${lab} ms for its calls (${n} × (re-check + remove) × ${LATENCY_MS} ms; ratio ${(ms / lab).toFixed(2)}) · ${posts} thread posts (milestones and summary) and ${updates} card updates, not one post per port (${n} s at 1 a second)`,
  );
  return { removal_ports: n, removal_ms: ms, removal_lab_ms: lab, removal_posts: posts };
}

/** FERRY_BENCH_ONLY_10K=1: parts 1 and 2 are skipped. */
class SkipSmall extends Error {}

function byMethod(calls: StandinCall[]): string {
  const m = new Map<string, number>();
  for (const c of calls) m.set(c.method, (m.get(c.method) ?? 0) + 1);
  return [...m].map(([k, v]) => `${k} ${v}`).join(', ');
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** The burst's client: its own plain-node process (bench/burst-client.mjs), as Slack is another machine. */
interface BurstClient {
  /** Opens one connection per request; resolves when all are open. */
  open(port: number, requests: { headers: Record<string, string>; body: string }[]): Promise<void>;
  /** Writes every request at once; per request, ms from its write to its full response. */
  go(): Promise<{ status: number; ms: number; text: string }[]>;
  kill(): void;
}

async function burstClient(): Promise<BurstClient> {
  const child = fork(path.join(import.meta.dirname, 'burst-client.mjs'), [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = <T>(type: string) =>
    new Promise<T>((resolve, reject) => {
      const onMessage = (m: { type: string; results?: T }) => {
        if (m.type !== type) return;
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve((m.results ?? undefined) as T);
      };
      const onExit = (code: number | null) => reject(new Error(`the burst client exited (${code}) before '${type}'`));
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
  return {
    async open(port, requests) {
      const ready = next<void>('ready');
      child.send({ type: 'open', port, requests });
      await ready;
    },
    async go() {
      const result = next<{ status: number; ms: number; text: string }[]>('result');
      child.send({ type: 'go' });
      return result;
    },
    kill: () => void child.kill(),
  };
}

/** Single commands before the warm burst: help, a refusal and a one-host sweep in turn. */
const WARMUP = 200;

async function warmUp(f: Ferry, slack: SlackStandin): Promise<void> {
  const t0 = Date.now();
  let sweeps = 0;
  for (let i = 0; i < WARMUP; i++) {
    // A sweep every 10th command, each in its own channel (chat.postMessage: 1 a second per channel).
    const kind = i % 10 === 0 ? 'sweep' : i % 2 ? 'help' : 'refusal';
    const line = kind === 'sweep' ? `find stale ports hyp${String(1 + (i % 99)).padStart(2, '0')}` : kind === 'refusal' ? 'find stale ports hyp99..hyp01' : 'help';
    if (kind === 'sweep') sweeps++;
    await postSigned(f.port, slashBody(line, { user: `U0WARM${String(i).padStart(3, '0')}`, channel: kind === 'sweep' ? `C0WARM${i}` : 'C0WARMUP', responseUrl: `${slack.responseUrl}w` }));
  }
  // The burst starts on an idle Ferry: every warm-up sweep's summary in.
  await until(() => (slack.calls.filter((c) => c.at >= t0 && channelOf(c).startsWith('C0WARM') && isSummary(c, 1)).length >= sweeps ? true : undefined), 'the warm-up sweeps’ summaries', 120_000);
}

/** 20 commands at once from 20 users in 5 channels: 10 sweeps, 5 refusals, 5 help; figures under keys prefixed for `tag`. */
async function burst(f: Ferry, slack: SlackStandin, client: BurstClient, tag: 'cold' | 'warm', what: string): Promise<Record<string, number>> {
  const lines = Array.from({ length: 20 }, (_, i) => (i % 4 === 0 ? 'find stale ports hyp99..hyp01' : i % 4 === 1 ? 'help' : `find stale ports hyp${String(1 + (i % 8) * 12).padStart(2, '0')}..hyp${String(12 + (i % 8) * 12).padStart(2, '0')}`));
  // Built and signed before the clock starts (a signature holds 5 minutes), connections open.
  const requests = lines.map((line, i) => {
    const body = slashBody(line, { user: `U0${tag.toUpperCase()}${String(i).padStart(2, '0')}`, channel: `C0CHAN${i % 5}`, responseUrl: `${slack.responseUrl}${tag}${i}` });
    return { headers: { 'content-type': 'application/x-www-form-urlencoded', ...sign(body) }, body };
  });
  await client.open(f.port, requests);
  const before = slack.calls.length;
  // Other work on the machine changes these figures more than anything in Ferry: printed beside them.
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  const t0 = Date.now();
  const acks = (await client.go()).map((res, i) => ({ line: lines[i]!, ...res }));
  const refusals = acks.filter((a) => a.line.includes('hyp99..hyp01'));
  const refusedInAck = refusals.filter((a) => (JSON.parse(a.text || '{}') as { text?: string }).text?.includes('runs backwards')).length;
  const sweeps = lines.filter((l) => !l.includes('hyp99..hyp01') && l !== 'help').length;
  await until(() => (slack.calls.slice(before).filter((c) => c.method === 'chat.postMessage' && c.status === 200 && /\(of 12 swept\)|No stale ports on 12 host/.test(String(c.body.text))).length >= sweeps ? true : undefined), 'every concurrent sweep’s summary', 120_000);
  const during = slack.calls.slice(before);
  const ackMs = acks.map((a) => a.ms);
  const p = tag === 'cold' ? 'concurrent' : 'warm_concurrent';
  const r = {
    [`${p}_ack_p50_ms`]: pct(ackMs, 50),
    [`${p}_ack_p99_ms`]: pct(ackMs, 99),
    [`${p}_refusal_ack_max_ms`]: Math.max(...refusals.map((a) => a.ms)),
    [`${p}_refusals_in_ack`]: refusedInAck,
    [`${p}_refusals`]: refusals.length,
    [`${p}_non_200`]: acks.filter((a) => a.status !== 200).length,
    [`${p}_429s`]: during.filter((c) => c.status === 429).length,
    [`${p}_all_done_ms`]: Math.max(...during.map((c) => c.at)) - t0,
    [`${p}_load1`]: os.loadavg()[0]!,
  };
  console.log(
    `20 commands at once, ${tag} (${what}; 10 sweeps, 5 refusals, 5 help; 20 users, 5 channels; timed by a separate client process from each write to its full response): ack p50 ${r[`${p}_ack_p50_ms`]!.toFixed(1)} ms, p99 ${r[`${p}_ack_p99_ms`]!.toFixed(1)} ms (target ≤ 50) · refusals answered in the ack ${refusedInAck}/${refusals.length}, slowest ${r[`${p}_refusal_ack_max_ms`]!.toFixed(1)} ms (target ≤ 100) · 429s ${r[`${p}_429s`]} · acks not 200: ${r[`${p}_non_200`]} · Slack calls ${during.length} (${byMethod(during)}) · last message ${r[`${p}_all_done_ms`]} ms · load average ${load} on ${os.availableParallelism()} cores`,
  );
  return r;
}

export async function main(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  // npm run build, as deployed: it also copies the Lua scripts (src/lua) beside the compiled code.
  const built = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
  if (built.status !== 0) throw new Error('npm run build failed');
  // As deployed (compose.yaml): an AOF fsynced every second; Ferry refuses a Redis that persists nothing.
  const redis = await startPrivateRedis(['--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec']);
  const slack = await startSlackStandin();
  try {
    // 1 and 2: the built-in 99-host lab.
    let f = await startFerry(YAML_99, redis.url, slack, 'bench99');
    try {
      if (process.env.FERRY_BENCH_ONLY_10K) throw new SkipSmall();
      await sweep(f, slack, 'hyp01', 1, 'C0WARM', 60_000); // warm both processes and the lab
      if (!process.env.FERRY_BENCH_ONLY_ACK) {
        const r = await sweep(f, slack, 'hyp01..hyp99', 99, 'C0QUIET', 60_000);
        const ideal = Math.ceil(99 / CONCURRENCY) * LATENCY_MS;
        Object.assign(out, { ack_99_ms: r.ackMs, report_99_ms: r.reportMs, last_99_ms: r.lastMs, ideal_99_ms: ideal, slack_calls_99: r.calls.length });
        console.log(`99 hosts: ack ${r.ackMs.toFixed(1)} ms · final report ${r.reportMs} ms (ideal ${ideal} ms, +${r.reportMs - ideal} ms, target ≤ +300) · last Slack message ${r.lastMs} ms · Slack calls ${r.calls.length} (${byMethod(r.calls)})`);
      }

      // 2: 20 commands at once, 20 users, 5 channels: 10 sweeps, 5 refusals, 5 help. The first
      // burst after the start (the web process's 2nd to 21st request: cold code) ...
      const client = await burstClient();
      try {
        Object.assign(out, await burst(f, slack, client, 'cold', 'first burst after start'));
        // 2b: the ack path alone: one command at a time on an otherwise idle Ferry (each sweep's
        // summary in before the next is typed), so the figure is Ferry's own path, not the other 19's.
        const alone: Record<string, number[]> = { sweep: [], refusal: [], help: [] };
        for (let i = 0; i < ISOLATED_ROUNDS; i++) {
          for (const kind of Object.keys(alone)) {
            const host = `hyp${String(1 + (i % 99)).padStart(2, '0')}`;
            const line = kind === 'sweep' ? `find stale ports ${host}` : kind === 'refusal' ? 'find stale ports hyp99..hyp01' : 'help';
            const t1 = Date.now();
            const res = await postSigned(f.port, slashBody(line, { user: `U0ALONE${i}`, channel: 'C0ALONE', responseUrl: `${slack.responseUrl}alone` }));
            alone[kind]!.push(res.ms);
            if (kind === 'sweep') await until(() => slack.calls.find((c) => c.at >= t1 && channelOf(c) === 'C0ALONE' && isSummary(c, 1)), 'the one-host summary', 30_000);
          }
        }
        for (const [kind, ms] of Object.entries(alone)) {
          Object.assign(out, { [`alone_ack_${kind}_p50_ms`]: pct(ms, 50), [`alone_ack_${kind}_max_ms`]: Math.max(...ms) });
        }
        console.log(
          `one command at a time (${ISOLATED_ROUNDS} of each, client-side, signed request to response): ${Object.entries(alone)
            .map(([k, ms]) => `${k} p50 ${pct(ms, 50).toFixed(1)} ms, max ${Math.max(...ms).toFixed(1)} ms`)
            .join(' · ')}`,
        );
        // ... and one on a warm web process, as production's always are: ~200 single commands
        // first (help, refusals, one-host sweeps), one at a time.
        await warmUp(f, slack);
        Object.assign(out, await burst(f, slack, client, 'warm', `after ${WARMUP} single commands`));
      } finally {
        client.kill();
      }
      const rss = f.peakRss();
      Object.assign(out, { rss_99_web_mib: rss.web, rss_99_worker_mib: rss.worker });
      console.log(`peak RSS (99-host lab): web ${rss.web.toFixed(0)} MiB, worker ${rss.worker.toFixed(0)} MiB`);
    } catch (e) {
      if (!(e instanceof SkipSmall)) throw e;
    } finally {
      await f.stop();
    }

    // 3: 10,000 hosts.
    if (!process.env.FERRY_BENCH_SKIP_10K) {
      f = await startFerry(YAML_10K, redis.url, slack, 'bench10k');
      try {
        if (!process.env.FERRY_BENCH_ONLY_REMOVAL) {
          await sweep(f, slack, 'h00001', 1, 'C0WARM10K', 60_000);
          const n = 10_000;
          const r = await sweep(f, slack, 'h00001..h10000', n, 'C0BIG', 600_000);
          const ideal = Math.ceil(n / CONCURRENCY) * LATENCY_MS;
          const rss = f.peakRss();
          Object.assign(out, { report_10k_ms: r.reportMs, last_10k_ms: r.lastMs, ideal_10k_ms: ideal, slack_calls_10k: r.calls.length, rss_10k_web_mib: rss.web, rss_10k_worker_mib: rss.worker });
          console.log(
            `10,000 hosts: final report ${r.reportMs} ms (ideal ${ideal} ms, ratio ${(r.reportMs / ideal).toFixed(3)}, target ≤ 1.15) · last Slack message ${r.lastMs} ms · Slack calls ${r.calls.length} (${byMethod(r.calls)}) vs ${out.slack_calls_99} at 99 hosts · peak RSS web ${rss.web.toFixed(0)} + worker ${rss.worker.toFixed(0)} = ${(rss.web + rss.worker).toFixed(0)} MiB (target < 250)`,
          );
        }
        if (!process.env.FERRY_BENCH_SKIP_REMOVAL) Object.assign(out, await removal(f, slack));
      } finally {
        await f.stop();
      }
    }
    console.log(`429s answered by the stand-in over the whole run: ${slack.rateLimited().length}`);
  } finally {
    await slack.close();
    await redis.close();
  }
  return out;
}

runAsScript(import.meta, main);
