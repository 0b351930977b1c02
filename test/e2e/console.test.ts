/** The console as a script: lines on stdin, the same rendering as Slack, exit after the last. */
import { describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { startFerry, writeConfig } from '../support/processes.js';
import { fastLabYaml, uniquePrefix } from '../support/harness.js';

describe('ferry console with stdin not a terminal', () => {
  it('runs each line, prints the sweep, refuses bad input, and exits 0 after the last line', async () => {
    const p = startFerry(
      'console',
      { REDIS_URL: inject('redisUrl'), FERRY_PREFIX: uniquePrefix('console'), FERRY_CONFIG: writeConfig(fastLabYaml()), LOG_LEVEL: 'warn' },
      { stdin: 'help\nfind stale ports hyp01..hyp12\nfind stale ports hyp99..hyp01\nhosts hyp01,hyp02\n' },
    );
    const code = await new Promise<number | null>((resolve) => p.child.once('exit', resolve));
    const out = p.output();
    expect(code, out).toBe(0);
    expect(out).toContain('@alice › find stale ports hyp01..hyp12');
    expect(out).toContain('12 hosts: hyp01…hyp12');
    expect(out).toMatch(/\d+ stale ports? on \d+ hosts? \(of 12 swept\)/);
    expect(out).toMatch(/hyp\d\d\s+C003FF[0-9A-F]{10}\s+100000C0DD00[AB]0[AB]0/);
    expect(out).toMatch(/12\/12 hosts · \d+ stale ports?/);
    expect(out).toContain('(only @alice) The range hyp99..hyp01 runs backwards; did you mean hyp01..hyp99?');
    expect(out).toMatch(/hyp01\s+prod-a\s+lab\s+ok/);
    expect(out).toContain('find stale ports <selector>');
  });
});
