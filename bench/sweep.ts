/**
 * Sweep benchmark: ack time of a signed /ferry command at the real HTTP receiver, time to
 * sweep 12 and 99 lab hosts at the lab's default latency (150 ms per call), and Slack Web API
 * calls per sweep. Slack is a local stand-in (nock); Redis is a private redis-server.
 */
import nock from 'nock';
import { startPrivateRedis } from '../test/support/redis-server.js';
import { runAsScript } from './support.js';
import { parseConfig } from '../src/config/load.js';
import { LAB_DEFAULT_YAML } from '../src/config/lab-default.js';
import { createRuntime } from '../src/runtime.js';
import { createFerry } from '../src/ferry.js';
import { startWorkers } from '../src/jobs/worker.js';
import { createSlackApp } from '../src/bot/slack/app.js';
import { silentLogger } from '../src/log.js';
import { SIGNING_SECRET, SLACK_API_URL, freePort, mockSlackApi, postSigned, slashBody } from '../test/support/slack.js';

export async function main(): Promise<Record<string, number>> {
  const redis = await startPrivateRedis();
  const slack = mockSlackApi();
  const loaded = parseConfig(LAB_DEFAULT_YAML, 'bench');
  const rt = createRuntime({ loaded, redisUrl: redis.url, log: silentLogger(), prefix: 'bench-sweep' });
  const deps = createFerry(rt, 'all', { env: { SLACK_BOT_TOKEN: 'xoxb-bench', SLACK_API_URL } });
  const workers = await startWorkers(deps);
  const port = await freePort();
  const app = createSlackApp(deps, { botToken: 'xoxb-bench', signingSecret: SIGNING_SECRET, port, slackApiUrl: SLACK_API_URL });
  await app.start(port);
  const out: Record<string, number> = {};
  try {
    // Warm the lab (seeding) so the figures are about sweeping.
    await rt.adapters.forHost('hyp01').describeHost('hyp01');
    const acks: number[] = [];
    for (const [label, selector, n] of [
      ['12', 'hyp01..hyp12', 12],
      ['99', 'hyp01..hyp99', 99],
    ] as const) {
      const before = slack.calls.length;
      const t0 = performance.now();
      const res = await postSigned(port, slashBody(`find stale ports ${selector}`));
      acks.push(res.ms);
      let op;
      for (;;) {
        [op] = await deps.ops.recent(1);
        if (op && op.hosts.length === n && op.status === 'succeeded') break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const sweepMs = performance.now() - t0;
      out[`sweep_${label}_hosts_work_ms`] = Number(op.params.durationMs ?? 0);
      await new Promise((r) => setTimeout(r, 1500)); // trailing card update
      const calls = slack.calls.slice(before);
      out[`sweep_${label}_hosts_ms`] = Math.round(sweepMs);
      out[`slack_calls_${label}_hosts`] = calls.length;
      console.log(
        `find stale ports ${selector}: ack ${res.ms.toFixed(1)} ms, command to summary ${Math.round(sweepMs)} ms (host sweeping ${op.params.durationMs} ms), Slack calls ${calls.length} (${[...new Set(calls.map((c) => c.method))].map((m) => `${m} ${calls.filter((c) => c.method === m).length}`).join(', ')})`,
    );
    }
    out.ack_ms_max = Math.round(Math.max(...acks) * 10) / 10;
    const ideal = Math.ceil(99 / rt.config.limits.sweepConcurrency) * rt.config.lab.latencyMs;
    console.log(`99 hosts at concurrency ${rt.config.limits.sweepConcurrency} and ${rt.config.lab.latencyMs} ms per call: ideal ${ideal} ms, host sweeping took ${out.sweep_99_hosts_work_ms} ms (ratio ${(out.sweep_99_hosts_work_ms! / ideal).toFixed(2)}); command to summary ${out.sweep_99_hosts_ms} ms including Slack's 1 message/s/channel pacing`);
  } finally {
    await app.stop();
    await workers.close();
    await deps.close();
    await rt.close();
    slack.done();
    nock.restore();
    await redis.close();
  }
  return out;
}

runAsScript(import.meta, main);
