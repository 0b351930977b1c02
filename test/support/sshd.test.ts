/**
 * The test sshd peer does not depend on the machine's shell setup. sshd runs every command, and
 * ForceCommand too, as `<login shell> -c …`, and bash started by sshd sources the system bashrc
 * and $HOME/.bashrc although it is not interactive; a root ~/.bashrc with `pyenv rehash` held
 * each command 20 s and more on a loaded machine. These tests plant rc files that leave a marker
 * and show that with the peer's isolation nothing runs them, and (the control) that without it
 * the same files do run, so the check can fail.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requirePeer, sshdAvailable, startSshd, type SshdPeer } from './sshd.js';

const ok = requirePeer('sshd', sshdAvailable(), 'openssh-server, openssh-client and ssh-keygen are needed');
const loginShell = path.basename(os.userInfo().shell ?? '');

function ssh(peer: SshdPeer, command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const args = ['-F', 'none', '-i', peer.privateKeyPath, '-p', String(peer.port), '-o', `UserKnownHostsFile=${peer.knownHostsPath}`, '-o', 'BatchMode=yes', `${peer.user}@${peer.host}`, command];
  return new Promise((resolve) =>
    execFile('ssh', args, { encoding: 'utf8', timeout: peer.bound(20_000) }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    ),
  );
}

/** A home whose every rc file appends its own name to <home>/markers. */
function plantedHome(): string {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-rc-home-'));
  fs.chmodSync(home, 0o755);
  const mark = (file: string): void => {
    fs.mkdirSync(path.dirname(path.join(home, file)), { recursive: true });
    fs.writeFileSync(path.join(home, file), `echo ${file} >> ${home}/markers\n`);
  };
  for (const f of ['.bashrc', '.bash_profile', '.bash_login', '.profile', '.zshenv', '.zshrc', '.ssh/rc', '.config/fish/config.fish']) mark(f);
  return home;
}
const markers = (home: string): string[] => (fs.existsSync(path.join(home, 'markers')) ? fs.readFileSync(path.join(home, 'markers'), 'utf8').split('\n').filter(Boolean) : []);

describe.skipIf(!ok)('the test sshd peer is independent of the user shell setup', () => {
  const peers: SshdPeer[] = [];
  const homes: string[] = [];
  let isolated: SshdPeer;
  let isolatedHome: string;
  beforeAll(async () => {
    isolatedHome = plantedHome();
    homes.push(isolatedHome);
    isolated = await startSshd({ home: isolatedHome });
    peers.push(isolated);
  });
  afterAll(async () => {
    await Promise.all(peers.map((p) => p.stop()));
    for (const h of homes) fs.rmSync(h, { recursive: true, force: true });
  });

  it('a session gets the peer home, not the passwd home, and runs no rc file from it', async () => {
    const r = await ssh(isolated, 'echo "$HOME"');
    expect(r).toMatchObject({ code: 0, stdout: `${isolatedHome}\n` });
    expect(r.stdout.trim()).not.toBe(os.userInfo().homedir);
    expect(markers(isolatedHome)).toEqual([]);
  });

  it('a ForceCommand (itself run through the login shell) runs no rc file either', async () => {
    const home = plantedHome();
    homes.push(home);
    const forced = await startSshd({ home, forceCommand: '/bin/echo forced' });
    peers.push(forced);
    expect(await ssh(forced, 'anything')).toMatchObject({ code: 0, stdout: 'forced\n' });
    expect(markers(home)).toEqual([]);
  });

  it('the default peer: an empty home of its own and a measured round trip', async () => {
    const p = await startSshd();
    peers.push(p);
    expect(fs.readdirSync(p.home)).toEqual([]);
    expect((await ssh(p, 'echo "$HOME"')).stdout).toBe(`${p.home}\n`);
    expect(p.roundTripMs).toBeGreaterThan(0);
    expect(p.bound(1000)).toBeGreaterThanOrEqual(1000);
  });

  // The control: the same planted files do run when only HOME is moved, so the checks above can
  // fail. Which files a shell reads depends on the login shell; bash and zsh are checked.
  it.skipIf(!['bash', 'zsh'].includes(loginShell))(`control: with only HOME moved, ${loginShell} under sshd does read the planted rc file`, async () => {
    const home = plantedHome();
    homes.push(home);
    const bare = await startSshd({ isolateShell: false, extraConfig: [`SetEnv HOME=${home}`] });
    peers.push(bare);
    expect((await ssh(bare, 'true')).code).toBe(0);
    expect(markers(home)).toContain(loginShell === 'bash' ? '.bashrc' : '.zshenv');
  });
});
