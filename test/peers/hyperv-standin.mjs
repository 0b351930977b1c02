#!/usr/bin/env node
/**
 * A stand-in for powershell.exe behind a real sshd (installed as the test user's ForceCommand):
 * it receives the client's command line in $SSH_ORIGINAL_COMMAND exactly as the SSH layer sent
 * it, insists on the `powershell.exe -NoProfile -NonInteractive -EncodedCommand <base64>` form,
 * decodes the UTF-16LE script, checks the envelope every Ferry script must have, recognises the
 * script by its `# ferry:<name>` marker and answers with the scenario's fixture.
 *
 * Usage (ForceCommand): node hyperv-standin.mjs <stateDir>
 *   <stateDir>/scenario.json: { "powershell": "powershell.exe", "fixtures": "/abs/dir",
 *     "responses": { "<marker>": Response | Response[] } }   (an array is consumed in order,
 *     its last element repeating)
 *   Response: { fixture?, stdout?, stderr?, exit?, delayMs?, touch?, ifFile?: { name, then: Response },
 *     untilFile? }   (untilFile: answer only once <stateDir>/<untilFile> exists — an event, not a delay)
 *   Every decoded script is appended to <stateDir>/calls.jsonl as { marker, script, argv }.
 */
import fs from 'node:fs';
import path from 'node:path';

const stateDir = process.argv[2];
const fail = (code, message) => {
  process.stderr.write(`hyperv-standin: ${message}\n`);
  process.exit(code);
};
if (!stateDir) fail(70, 'usage: hyperv-standin.mjs <stateDir>');

const scenario = JSON.parse(fs.readFileSync(path.join(stateDir, 'scenario.json'), 'utf8'));
const original = process.env.SSH_ORIGINAL_COMMAND ?? '';
const argv = original.split(' ');
const expected = scenario.powershell ?? 'powershell.exe';
// Any quoting, extra word or different switch means the SSH layer or adapter mangled the line.
if (argv.length !== 5 || argv[0] !== expected || argv[1] !== '-NoProfile' || argv[2] !== '-NonInteractive' || argv[3] !== '-EncodedCommand' || !/^[A-Za-z0-9+/]+=*$/.test(argv[4])) {
  fail(64, `unexpected command line: ${JSON.stringify(original.slice(0, 200))}`);
}
const script = Buffer.from(argv[4], 'base64').toString('utf16le');
const marker = /^# ferry:([a-z0-9-]+)/.exec(script)?.[1];
fs.appendFileSync(path.join(stateDir, 'calls.jsonl'), `${JSON.stringify({ marker: marker ?? null, script, argv: argv.slice(0, 4) })}\n`);

const missing = [
  [marker, 'a "# ferry:<name>" marker on the first line'],
  [script.includes("$ErrorActionPreference='Stop'"), "$ErrorActionPreference='Stop'"],
  [/ConvertTo-Json -Depth \d+ -Compress/.test(script), 'ConvertTo-Json -Depth N -Compress'],
].filter(([ok]) => !ok);
if (missing.length) fail(65, `script lacks ${missing.map(([, what]) => what).join(', ')}`);

let response = scenario.responses?.[marker];
if (Array.isArray(response)) {
  const counter = path.join(stateDir, `count-${marker}`);
  const n = fs.existsSync(counter) ? Number(fs.readFileSync(counter, 'utf8')) : 0;
  fs.writeFileSync(counter, String(n + 1));
  response = response[Math.min(n, response.length - 1)];
}
if (!response) {
  process.stdout.write(`${JSON.stringify({ ok: false, error: { code: 'standin', message: `the stand-in has no answer for ${marker}` } })}\n`);
  process.exit(1);
}

const answer = (r) => {
  if (r.touch) fs.writeFileSync(path.join(stateDir, r.touch), '');
  if (r.ifFile && fs.existsSync(path.join(stateDir, r.ifFile.name))) return answer(r.ifFile.then);
  if (r.stderr) process.stderr.write(r.stderr);
  if (r.fixture) process.stdout.write(fs.readFileSync(path.join(scenario.fixtures, r.fixture), 'utf8'));
  if (r.stdout) process.stdout.write(r.stdout);
  process.exitCode = r.exit ?? 0;
};
// A long-running answer (a live migration) ends early when its ifFile appears, as a real
// Move-VM does once Msvm_MigrationJob is cancelled. With untilFile it ends only once that file
// exists (and delayMs, if any, has passed): the test's event, not a guessed duration.
const exists = (name) => fs.existsSync(path.join(stateDir, name));
let delayed = false;
const finish = () => {
  clearTimeout(done);
  clearInterval(watch);
  answer(response);
};
const done = setTimeout(() => {
  delayed = true;
  if (!response.untilFile || exists(response.untilFile)) finish();
}, response.delayMs ?? 0);
const watch = setInterval(() => {
  if (response.ifFile && exists(response.ifFile.name)) finish();
  else if (delayed && response.untilFile && exists(response.untilFile)) finish();
}, 50);
