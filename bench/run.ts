/**
 * `npm run bench`: every benchmark, one after another (a 2-core machine: never in parallel).
 * Each prints its own figures; a benchmark whose peer is missing says so and is skipped.
 */
import fs from 'node:fs';
import path from 'node:path';

const BENCHES = ['startup.ts', 'sweep.ts', 'slack-e2e.ts', 'slack-outage.ts', 'slack-fairness.ts', 'drain.ts', 'libvirt-sweep.ts', 'libvirt-migrate.ts'];

async function run(): Promise<void> {
  const only = process.argv.slice(2);
  let failed = 0;
  for (const file of BENCHES) {
    const name = file.replace(/\.ts$/, '');
    if (only.length && !only.includes(name)) continue;
    const full = path.join(import.meta.dirname, file);
    if (!fs.existsSync(full)) continue;
    console.log(`\n=== bench/${file}`);
    try {
      const mod = (await import(full)) as { main: () => Promise<unknown> };
      await mod.main();
    } catch (e) {
      failed++;
      console.error(`bench/${file} failed: ${e instanceof Error ? e.stack : String(e)}`);
    }
  }
  process.exit(failed ? 1 : 0);
}

void run();
