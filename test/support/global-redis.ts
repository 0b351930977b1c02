/**
 * Vitest global setup: one private redis-server for the whole run. Each test file isolates
 * itself with its own key prefix / DB (see test/support/redis.ts).
 */
import type { TestProject } from 'vitest/node';
import { startPrivateRedis, type PrivateRedis } from './redis-server.js';

let redis: PrivateRedis | undefined;

export async function setup(project: TestProject): Promise<void> {
  redis = await startPrivateRedis();
  project.provide('redisUrl', redis.url);
}

export async function teardown(): Promise<void> {
  await redis?.close();
}

