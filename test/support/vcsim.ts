/**
 * govmomi's vCenter simulator as a test peer: our launcher (test/peers/go/src/ferry-vcsim) is
 * built once in GOPATH mode against Debian's golang-github-vmware-govmomi-dev and cached by
 * source hash under test/peers/go/bin (gitignored). Each suite starts its own simulator.
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { findProgram, requirePeer } from './sshd.js';

const GO_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'peers', 'go');
const SRC = path.join(GO_DIR, 'src', 'ferry-vcsim', 'main.go');
const BIN_DIR = path.join(GO_DIR, 'bin');
const GOCODE = process.env.FERRY_GOCODE ?? '/usr/share/gocode';
const GOVMOMI = path.join(GOCODE, 'src', 'github.com', 'vmware', 'govmomi', 'simulator');

export interface Vcsim {
  url: string;
  user: string;
  password: string;
  certPem: string;
  /** SHA-256 of the server certificate, "AB:CD:…". */
  thumbprint: string;
  /** The certificate written to a file, for vsphere.caFile. */
  caFile: string;
  stop(): Promise<void>;
}

/** Skips loudly (or fails under FERRY_REQUIRE_PEERS=1) when go or the govmomi sources are missing. */
export function vcsimAvailable(): boolean {
  const go = findProgram('go');
  if (!go) return requirePeer('vcsim', false, 'go is not installed (Debian: apt-get install golang-go)');
  if (!fs.existsSync(GOVMOMI)) {
    return requirePeer('vcsim', false, `govmomi sources not found at ${GOVMOMI} (Debian: apt-get install golang-github-vmware-govmomi-dev)`);
  }
  return true;
}

/** Builds the launcher unless a binary for this source, Go and govmomi already exists. */
export function buildVcsim(): { binary: string; buildMs: number; cached: boolean } {
  const goVersion = spawnSync('go', ['version'], { encoding: 'utf8' }).stdout.trim();
  const govmomiStamp = fs.statSync(path.join(GOVMOMI, 'model.go')).mtimeMs;
  const hash = crypto.createHash('sha256').update(fs.readFileSync(SRC)).update(goVersion).update(String(govmomiStamp)).digest('hex').slice(0, 16);
  const binary = path.join(BIN_DIR, `ferry-vcsim-${hash}`);
  if (fs.existsSync(binary)) return { binary, buildMs: 0, cached: true };
  fs.mkdirSync(BIN_DIR, { recursive: true });
  const started = Date.now();
  // Build to a private name then rename: two suites may build at once.
  const tmp = `${binary}.${process.pid}.tmp`;
  const gopath = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-gopath-'));
  const res = spawnSync('go', ['build', '-o', tmp, './src/ferry-vcsim'], {
    cwd: GO_DIR,
    encoding: 'utf8',
    env: {
      ...process.env,
      GO111MODULE: 'off',
      GOPATH: `${gopath}:${GOCODE}`,
      GOCACHE: process.env.GOCACHE ?? path.join(BIN_DIR, '.gocache'),
      GOFLAGS: '',
    },
    timeout: 15 * 60_000,
  });
  fs.rmSync(gopath, { recursive: true, force: true });
  if (res.status !== 0) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`building ferry-vcsim failed (status ${res.status}):\n${res.stderr || res.error?.message}`);
  }
  fs.renameSync(tmp, binary);
  return { binary, buildMs: Date.now() - started, cached: false };
}

export async function startVcsim(binary: string, args: string[] = []): Promise<Vcsim> {
  const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const rl = readline.createInterface({ input: child.stdout });
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`ferry-vcsim did not start within 30 s: ${stderr}`)), 30_000);
    rl.once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`ferry-vcsim exited with ${code}: ${stderr}`));
    });
  });
  rl.close();
  const ready = JSON.parse(line) as { url: string; user: string; password: string; certPem?: string; thumbprint?: string };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-vcsim-'));
  const caFile = path.join(dir, 'vcsim.pem');
  fs.writeFileSync(caFile, ready.certPem ?? '');
  return {
    url: ready.url,
    user: ready.user,
    password: ready.password,
    certPem: ready.certPem ?? '',
    thumbprint: ready.thumbprint ?? '',
    caFile,
    async stop() {
      if (child.exitCode === null) {
        // Closing stdin is the launcher's normal stop; SIGKILL only if it hangs.
        const exited = new Promise((r) => child.once('exit', r));
        child.stdin.end();
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
