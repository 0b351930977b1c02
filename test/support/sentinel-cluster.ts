/**
 * A real Redis Sentinel set-up on loopback, as a deployment runs it: a primary and a replica
 * (both with AOF) and three redis-sentinel processes (Debian's redis-sentinel) watching them
 * under the master name `ferry` with quorum 2. The test can fail the primary over the two ways
 * it happens in production: `SENTINEL FAILOVER` (the old primary stays writable for a while and
 * then is demoted) or killing the primary's process (restarted afterwards: the sentinels turn it
 * into a replica of the new primary). Never the shared Redis on 6379.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { Redis } from 'ioredis';
import { startPrivateRedis, type PrivateRedis } from './redis-server.js';
import { freePort, listening } from './net.js';
import { eventually } from './wait.js';

export const MASTER = 'ferry';

export interface SentinelCluster {
  /** host:port,host:port,host:port for REDIS_SENTINELS. */
  sentinels: string;
  /**
   * Hold back the replication stream from the first primary to its replica (a slow link between
   * the data nodes): the primary keeps taking writes the replica does not get, as asynchronous
   * replication allows. The first primary is reached through a relay (the address the sentinels
   * monitor) that can hold its replication connection; killing that primary then loses them.
   */
  holdReplication(): void;
  /** Port of the first primary itself (not the relay), to read what it holds. */
  firstPrimaryPort: number;
  /** The port of the node that was primary before the last failover/kill. */
  previousPrimary?: number;
  /** Until the node on `port` is a replica (the sentinels demoted it). */
  demoted(port: number): Promise<void>;
  /** The port of the data node the sentinels name as primary now. */
  primaryPort(): Promise<number>;
  /** SENTINEL FAILOVER; resolves once the sentinels name the other node (returns its port). */
  failover(): Promise<number>;
  /** SIGKILL the primary; resolves once it is gone, with `promoted`: once every sentinel names the other node (its port). */
  killPrimary(): Promise<{ promoted: Promise<number> }>;
  /** Start a killed node again (the sentinels make it a replica) and wait until it is in sync. */
  restartKilled(): Promise<void>;
  /** Until the current primary has a replica in sync (a second failover has somewhere to go). */
  replicaInSync(): Promise<void>;
  close(): Promise<void>;
}

/** A short-lived command to one node (no retries: a dead node answers null). */
async function ask(port: number, ...args: (string | number)[]): Promise<unknown> {
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
  try {
    await c.connect();
    return await c.call(String(args[0]), ...args.slice(1).map(String));
  } catch {
    return null;
  } finally {
    c.disconnect();
  }
}

/** A flat [field, value, …] answer (SENTINEL MASTER, one entry of SENTINEL REPLICAS) as a record. */
function fieldsOf(flat: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const a = Array.isArray(flat) ? (flat as unknown[]).map(String) : [];
  for (let i = 0; i + 1 < a.length; i += 2) out[a[i]!] = a[i + 1]!;
  return out;
}

/**
 * Whether the sentinel on `port` could fail over now: it sees the primary up, the two other
 * sentinels, and a replica with a working link (what SENTINEL FAILOVER and a promotion after a
 * kill select from). The sentinels learn a replica's state from INFO every 10 s, so this can lag
 * the replica's own view by that long: waited on, never assumed.
 */
async function sentinelSeesGoodReplica(port: number): Promise<boolean> {
  const master = fieldsOf(await ask(port, 'SENTINEL', 'MASTER', MASTER));
  if (!master['flags'] || /down|failover/.test(master['flags']) || Number(master['num-other-sentinels'] ?? 0) < 2) return false;
  const replicas = ((await ask(port, 'SENTINEL', 'REPLICAS', MASTER)) as unknown[] | null) ?? [];
  return replicas.map(fieldsOf).some((r) => !/down|disconnected/.test(r['flags'] ?? 'down') && r['master-link-status'] === 'ok');
}

/** A node's own answer (not through the sentinels), on a connection that never retries. */
export async function onNode<T>(port: number, f: (c: Redis) => Promise<T>): Promise<T> {
  const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    return await f(c);
  } finally {
    c.disconnect();
  }
}

/** The port of the first replica the primary on `port` lists in its ROLE answer. */
export async function replicaPortOf(port: number): Promise<number> {
  return onNode(port, async (c) => Number(((await c.call('ROLE')) as [string, number, [string, string, string][]])[2][0]![1]));
}

export async function startSentinelCluster(): Promise<SentinelCluster> {
  const aof = ['--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec'];
  const a = await startPrivateRedis(aof);
  const sentinelPorts: number[] = [];
  const sockets = new Set<net.Socket>();
  let held = false;
  // The relay in front of the first primary: what the sentinels monitor and the replica follows.
  const relay = net.createServer((client) => {
    const upstream = net.connect(a.port, '127.0.0.1');
    let replication = false;
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.on('data', (d: Buffer) => {
      if (/PSYNC|REPLCONF/i.test(d.toString('latin1'))) replication = true;
      if (!(held && replication)) upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (!(held && replication)) client.write(d);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  const relayPort = (relay.address() as net.AddressInfo).port;
  const b = await startPrivateRedis([...aof, '--replicaof', '127.0.0.1', String(relayPort)]);
  // By port as the sentinels name them: the relay's while the first primary is primary.
  const nodes = new Map<number, PrivateRedis>([
    [a.port, a],
    [b.port, b],
    [relayPort, a],
  ]);
  // The replica linked before the sentinels start: their first INFO of the primary finds it,
  // instead of the next one 10 s later.
  await eventually(async () => /slave0:ip=[^,]+,port=\d+,state=online/.test(String((await ask(a.port, 'INFO', 'replication')) ?? '')), 'the replica linked to the primary', 20_000).catch(async (e: unknown) => {
    relay.close();
    await Promise.all([a.close(), b.close()]);
    throw e;
  });
  const sentinels: ChildProcess[] = [];
  let killed: PrivateRedis | undefined;
  const cluster: SentinelCluster = {
    sentinels: '',
    firstPrimaryPort: a.port,
    holdReplication() {
      held = true;
    },
    async demoted(port) {
      await eventually(async () => /role:slave/.test(String((await ask(port, 'INFO', 'replication')) ?? '')), `the node on ${port} to be demoted to a replica`, 30_000);
    },
    async primaryPort() {
      for (const p of sentinelPorts) {
        const r = (await ask(p, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER)) as [string, string] | null;
        if (r) return Number(r[1]);
      }
      throw new Error('no sentinel answers');
    },
    async failover() {
      const before = await cluster.primaryPort();
      cluster.previousPrimary = before;
      await cluster.replicaInSync();
      // replicaInSync waited for every sentinel's view; a refusal now (NOGOODSLAVE after a view
      // refreshed in between) is asked again within one more INFO round.
      const ok = await eventually(async () => (await ask(sentinelPorts[0]!, 'SENTINEL', 'FAILOVER', MASTER)) === 'OK', 'SENTINEL FAILOVER to be accepted', 20_000);
      void ok;
      return eventually(async () => {
        const now = await cluster.primaryPort();
        return now !== before ? now : undefined;
      }, 'the sentinels to name a new primary', 15_000);
    },
    async killPrimary() {
      const before = await cluster.primaryPort();
      if (!held) await cluster.replicaInSync();
      killed = nodes.get(before)!;
      await killed.stop('SIGKILL');
      // The relay fronted the first primary only. Left up, the sentinels would know that node
      // twice once it is back (by the relay's address and by its own): promoted by one while
      // seen as a replica by the other, it is told to replicate from itself, and the sentinels
      // fail over again and again. Closed, its entry stays down; restartKilled makes the node a
      // replica by its own address.
      if (killed === a) {
        held = false;
        relay.close();
        for (const s of sockets) s.destroy();
      }
      const promoted = eventually(
        async () => {
          // Every sentinel, not just one: Ferry may ask any of them.
          const seen = await Promise.all(sentinelPorts.map((p) => ask(p, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER) as Promise<[string, string] | null>));
          const ports = seen.map((r) => Number(r?.[1]));
          return ports.every((p) => p !== before && p === ports[0]) ? ports[0] : undefined;
        },
        'the sentinels to promote the replica after the primary was killed',
        20_000,
      );
      promoted.catch(() => undefined);
      return { promoted };
    },
    async restartKilled() {
      if (!killed) return;
      await killed.start();
      // A replica of the primary at once, by its own address, as the sentinels would make it had
      // they known it by that address (the first primary they knew only through the relay).
      await eventually(async () => (await ask(killed!.port, 'REPLICAOF', '127.0.0.1', await cluster.primaryPort())) === 'OK', `the restarted node on ${killed.port} to follow the primary`);
      killed = undefined;
      await cluster.replicaInSync();
    },
    async replicaInSync() {
      await eventually(
        async () => {
          const primary = await cluster.primaryPort();
          const info = String((await ask(primary, 'INFO', 'replication')) ?? '');
          if (!/role:master/.test(info)) return false;
          // slave0:ip=127.0.0.1,port=…,state=online,offset=…,lag=0
          const offset = Number(/master_repl_offset:(\d+)/.exec(info)?.[1] ?? -1);
          const rep = /slave\d+:ip=[^,]+,port=(\d+),state=online,offset=(\d+)/.exec(info);
          if (!(rep !== null && Number(rep[2]) >= offset - 1024 * 1024 && nodes.has(Number(rep[1])))) return false;
          // And every sentinel knows it (a failover asked of any of them has a replica to promote).
          return (await Promise.all(sentinelPorts.map(sentinelSeesGoodReplica))).every(Boolean);
        },
        'a replica online and in sync with the primary, and every sentinel seeing it',
        // Idle: a resync plus one of the sentinels' 10 s INFO rounds (their clock, not the CPU's).
        30_000,
      );
    },
    async close() {
      for (const s of sockets) s.destroy();
      relay.close();
      for (const s of sentinels) if (s.exitCode === null && s.signalCode === null) s.kill('SIGKILL');
      await Promise.all([...new Set(nodes.values())].map((n) => n.close()));
    },
  };
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const conf = path.join(a.dir, `sentinel-${i}.conf`);
      fs.writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${a.dir}`,
          `sentinel monitor ${MASTER} 127.0.0.1 ${relayPort} 2`,
          `sentinel down-after-milliseconds ${MASTER} 1000`,
          `sentinel failover-timeout ${MASTER} 10000`,
          `sentinel parallel-syncs ${MASTER} 1`,
          '',
        ].join('\n'),
      );
      const s = spawn('redis-sentinel', [conf, '--loglevel', 'warning'], { stdio: 'ignore' });
      sentinels.push(s);
      sentinelPorts.push(port);
      await eventually(async () => (s.exitCode === null ? listening(port) : Promise.reject(new Error(`redis-sentinel exited (${s.exitCode})`))), `redis-sentinel on ${port}`, 10_000);
    }
    cluster.sentinels = sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',');

    // Each sentinel knows the replica and the two other sentinels before anything fails.
    await eventually(
      async () => {
        for (const p of sentinelPorts) {
          const reps = (await ask(p, 'SENTINEL', 'REPLICAS', MASTER)) as unknown[] | null;
          const peers = (await ask(p, 'SENTINEL', 'SENTINELS', MASTER)) as unknown[] | null;
          if (!reps || reps.length < 1 || !peers || peers.length < 2) return false;
        }
        return true;
      },
      'the sentinels to discover the replica and each other',
      // Idle: hello messages every 2 s, and one INFO round (10 s) should the first miss the replica.
      30_000,
    );
    await cluster.replicaInSync();
  } catch (e) {
    await cluster.close();
    throw e;
  }
  return cluster;
}

/** What confirmedAcrossKill saw. */
export interface AcrossKill<T> {
  result: T;
  /** The replica of the first primary, promoted by the kill. */
  replicaPort: number;
  /** The node the sentinels named after the kill. */
  promoted: number;
  /** The write was on the replica while its replication was held (it cannot have been). */
  onReplicaWhileHeld: boolean;
  /** The call returned before the primary was killed (a write the kill then lost). */
  returnedBeforeKill: boolean;
}

/**
 * One write across a killed primary, as the failover tests of confirmed state make it: the
 * replica in sync, then its replication held back; `write` starts; once `written` sees it on the
 * first primary (and a confirmation would have had time to come, had there been one), the
 * primary is killed. Returns the call's result once the replica is promoted, and whether the call
 * had returned earlier: a confirmed write waits for the new primary.
 */
export async function writeAcrossKill<T>(cluster: SentinelCluster, what: string, write: () => Promise<T>, written: (node: Redis) => Promise<boolean>): Promise<AcrossKill<T>> {
  await cluster.replicaInSync();
  const replicaPort = await replicaPortOf(cluster.firstPrimaryPort);
  cluster.holdReplication();
  let returned = false;
  const call = write().finally(() => (returned = true));
  call.catch(() => undefined);
  await eventually(() => onNode(cluster.firstPrimaryPort, written), `${what} on the primary`);
  const onReplicaWhileHeld = await onNode(replicaPort, written);
  // An unconfirmed write returns at once; a confirmed one is still waiting for the replica.
  await new Promise((r) => setTimeout(r, 1500));
  const returnedBeforeKill = returned;
  const { promoted } = await cluster.killPrimary();
  const promotedPort = await promoted;
  return { result: await call, replicaPort, promoted: promotedPort, onReplicaWhileHeld, returnedBeforeKill };
}
