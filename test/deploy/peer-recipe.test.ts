// The recipe `ferry peer add --print` prints: names and paths validated, defaults, idempotent steps, a sender table that never names a spool.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { peerAddCommand } from '../../src/cli/peer.js';
import { peerRecipe, renderRecipe, resolvePeerRecipe, senderSnippet, shq, sshdMatchBlock, type PeerRecipeOptions } from '../../src/deploy/peer-recipe.js';
import { isFerryError } from '../../src/errors.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ferry@alpha';

function usageError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isFerryError(err, 'EUSAGE')) return err.message;
    throw err;
  }
  throw new Error('expected EUSAGE');
}

describe('peerRecipe validation', () => {
  it.each(['alpha', 'beta.example', 'host_1', 'A9', 'x'.repeat(64)])('accepts the peer name %j', (peer) => {
    expect(() => peerRecipe({ peer, login: 'ferry-in-x' })).not.toThrow();
  });

  it.each(['', '-alpha', '.alpha', 'al pha', 'al/pha', '..', "al'pha", 'al;pha', 'x'.repeat(65), 'alpha\n'])('refuses the peer name %j with EUSAGE', (peer) => {
    expect(usageError(() => peerRecipe({ peer }))).toMatch(/^peer name .* is invalid; expected/);
  });

  it.each(['ferry-in-alpha', '_ferry', 'f1x2y-beta-alpha', 'a.b', 'a'.repeat(32)])('accepts the login %j', (login) => {
    expect(() => peerRecipe({ peer: 'alpha', login })).not.toThrow();
  });

  it.each(['Ferry', '1ferry', '-ferry', 'fer ry', 'fer:ry', "fer'ry", 'a'.repeat(33), ''])('refuses the login %j with EUSAGE', (login) => {
    expect(usageError(() => peerRecipe({ peer: 'alpha', login }))).toMatch(/^login .* is not a valid Linux user name/);
  });

  it('refuses a daemon user that is no valid user name', () => {
    expect(usageError(() => peerRecipe({ peer: 'alpha', daemonUser: 'root;rm' }))).toMatch(/^daemon user/);
  });

  it('asks for --login when the default login would be longer than 32 characters or not lower-case', () => {
    expect(usageError(() => peerRecipe({ peer: 'a-rather-long-peer-name-x' }))).toMatch(/default login .* pass --login NAME/);
    expect(usageError(() => peerRecipe({ peer: 'Alpha' }))).toMatch(/pass --login NAME/);
  });

  it.each<[keyof PeerRecipeOptions, string]>([
    ['spoolRoot', 'var/spool/ferry'],
    ['spoolRoot', '/var/spool/../ferry'],
    ['chrootBase', '/srv/fe rry'],
    ['chrootBase', "/srv/fe'rry"],
    ['sshdConfigFile', '/etc/ssh/$(reboot).conf'],
    ['authorizedKeysDir', '/etc/ssh/keys\n'],
    ['chrootBase', '/tmp/ferry'],
  ])('refuses %s = %j with EUSAGE', (field, value) => {
    expect(usageError(() => peerRecipe({ peer: 'alpha', [field]: value }))).toMatch(/invalid|sshd refuses/);
  });

  it.each(['', 'ssh-ed25519 AAAA a\nssh-ed25519 BBBB b', 'ssh-ed25519 AA\rAA'])('refuses the public key %j: one line only', (publicKey) => {
    expect(usageError(() => peerRecipe({ peer: 'alpha', publicKey }))).toMatch(/one non-empty line/);
  });

  it.each([0, 1023, 1.5, -1, Number.NaN])('refuses the quota %j', (quotaBytes) => {
    expect(usageError(() => peerRecipe({ peer: 'alpha', quotaBytes }))).toMatch(/--quota expects a whole number/);
  });

  it.each([0, 65536, 22.5])('refuses the ssh port %j', (sshPort) => {
    expect(usageError(() => peerRecipe({ peer: 'alpha', sshPort }))).toMatch(/--ssh-port/);
  });
});

describe('peerRecipe defaults', () => {
  it('applies the documented production defaults', () => {
    const r = resolvePeerRecipe({ peer: 'alpha', receiver: 'beta' });
    expect(r).toMatchObject({
      login: 'ferry-in-alpha',
      daemonUser: 'ferry',
      spoolRoot: '/var/spool/ferry',
      chrootBase: '/srv/ferry',
      chroot: '/srv/ferry/alpha',
      landingDir: '/var/spool/ferry/landing/alpha',
      sshdConfigFile: '/etc/ssh/sshd_config.d/ferry-alpha.conf',
      authorizedKeysDir: '/etc/ssh/ferry-authorized_keys',
      fstab: true,
      reloadSshd: true,
      receiverHost: 'beta',
      sshPort: 22,
    });
    expect(r.publicKey).toBeUndefined();
    expect(r.quotaBytes).toBeUndefined();
  });

  it('makes the landing directory daemon-owned, group <login>, setgid 2770, and the chroot root-owned 0755', () => {
    const sh = peerRecipe({ peer: 'alpha' }).map((s) => s.sh);
    expect(sh).toContain('install -d -o ferry -g ferry-in-alpha -m 2770 /var/spool/ferry/landing/alpha');
    expect(sh).toContain('install -d -o root -g root -m 0755 /srv/ferry /srv/ferry/alpha');
    expect(sh).toContain('mountpoint -q /srv/ferry/alpha/landing || mount --bind /var/spool/ferry/landing/alpha /srv/ferry/alpha/landing');
    expect(sh).toContain("usermod -p '*' ferry-in-alpha");
    expect(sh).toContain('usermod -a -G ferry-in-alpha ferry');
  });

  it('writes the Match block with chroot, internal-sftp -u 0027 -d /landing, and every forwarding and tty off', () => {
    const block = sshdMatchBlock(resolvePeerRecipe({ peer: 'alpha' }));
    const lines = block.split('\n').map((l) => l.trim());
    for (const want of [
      'Match User ferry-in-alpha',
      'AuthorizedKeysFile /etc/ssh/ferry-authorized_keys/%u',
      'ChrootDirectory /srv/ferry/alpha',
      'ForceCommand internal-sftp -u 0027 -d /landing',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'DisableForwarding yes',
      'AllowTcpForwarding no',
      'AllowAgentForwarding no',
      'AllowStreamLocalForwarding no',
      'X11Forwarding no',
      'PermitTTY no',
      'PermitTunnel no',
    ]) {
      expect(lines).toContain(want);
    }
    expect(peerRecipe({ peer: 'alpha' }).some((s) => s.sh.includes(block))).toBe(true);
  });

  it('authorizes the sender key with restrict, and keeps a key line that already has options', () => {
    expect(peerRecipe({ peer: 'alpha', publicKey: KEY }).some((s) => s.sh.includes(`'restrict ${KEY}'`))).toBe(true);
    const withOpts = `restrict,from="10.0.0.1" ${KEY}`;
    expect(peerRecipe({ peer: 'alpha', publicKey: withOpts }).some((s) => s.sh.includes(shq(withOpts)) && !s.sh.includes('restrict restrict'))).toBe(true);
  });

  it('writes a placeholder comment, and says so, when no public key is given', () => {
    const step = peerRecipe({ peer: 'alpha' }).find((s) => s.sh.includes('/etc/ssh/ferry-authorized_keys/ferry-in-alpha') && s.sh.includes('>>'));
    expect(step?.sh).toContain("'# paste the public key of alpha");
    expect(step?.why).toMatch(/No --public-key was given: a placeholder comment is written/);
  });

  it('leaves out fstab, the sshd reload and the quota when told to, and adds the quota only with quotaBytes', () => {
    const plain = peerRecipe({ peer: 'alpha', fstab: false, reloadSshd: false }).map((s) => s.sh).join('\n');
    expect(plain).not.toContain('/etc/fstab');
    expect(plain).not.toContain('systemctl');
    expect(plain).not.toContain('setquota');
    const full = peerRecipe({ peer: 'alpha', quotaBytes: 10 * 2 ** 30, quotaFiles: 100_000 }).map((s) => s.sh);
    expect(full).toContain("grep -qxF '/var/spool/ferry/landing/alpha /srv/ferry/alpha/landing none bind 0 0' /etc/fstab || printf '%s\\n' '/var/spool/ferry/landing/alpha /srv/ferry/alpha/landing none bind 0 0' >> /etc/fstab");
    expect(full.at(-1)).toBe('sshd -t && (systemctl reload ssh || systemctl reload sshd)');
    expect(full.find((s) => s.startsWith('setquota'))).toBe(`setquota -u ferry-in-alpha 0 ${10 * 2 ** 20} 0 100000 "$(df -P /var/spool/ferry/landing/alpha | awk 'NR==2 {print $6}')"`);
  });
});

describe('peerRecipe idempotence (text form)', () => {
  const steps = peerRecipe({ peer: 'alpha', publicKey: KEY, quotaBytes: 2 ** 30 });

  // Each command that makes something once must be guarded by a test that it is already there.
  it.each<[string, RegExp, RegExp]>([
    ['groupadd', /groupadd/, /^getent group ferry-in-alpha >\/dev\/null \|\| groupadd /],
    ['useradd', /useradd/, /^getent passwd ferry-in-alpha >\/dev\/null \|\| useradd /],
    ['mount --bind', /mount --bind/, /^mountpoint -q \S+ \|\| mount --bind /],
    ['the mount point', /install -d .*\/alpha\/landing$/, /^mountpoint -q \S+ \|\| install -d /],
    ['the fstab line', /\/etc\/fstab/, /^grep -qxF '[^']+' \/etc\/fstab \|\| printf /],
    ['the key line', />> \/etc\/ssh\/ferry-authorized_keys\//, /^grep -qxF -- '[^']+' \S+ \|\| printf /],
    ['the key file', / \/dev\/null \//, /^\[ -f \S+ \] \|\| install /],
  ])('guards %s', (_what, selects, guard) => {
    const matching = steps.filter((s) => selects.test(s.sh));
    expect(matching.length).toBeGreaterThan(0);
    for (const s of matching) expect(s.sh).toMatch(guard);
  });

  it('uses only commands that are idempotent by nature otherwise (install -d, usermod, overwriting cat >, setquota)', () => {
    const guarded = /^(getent|mountpoint -q|grep -qxF|\[ )/;
    for (const s of steps.filter((x) => !guarded.test(x.sh))) {
      expect(s.sh).toMatch(/^(install -d |usermod |cat > \S+ <<'EOF'\n|setquota |sshd -t )/);
      expect(s.sh).not.toMatch(/>>/);
    }
  });

  it('renders a commented POSIX sh script: shebang, set -eu, each command after its reason', () => {
    const text = renderRecipe(steps);
    expect(text.startsWith('#!/bin/sh\n')).toBe(true);
    expect(text).toContain('\nset -eu\n');
    for (const s of steps) expect(text).toContain(`# ${s.why.split('\n').join('\n# ')}\n${s.sh}\n`);
    execFileSync('/bin/sh', ['-n', '-c', text]); // parses
  });
});

describe('shq', () => {
  it.each(['plain', '/a/b-c_d.e', "it's", 'a b', '$(reboot)', '`id`', 'x"y', '*', '', 'back\\slash'])('quotes %j so that sh reads it back unchanged', (s) => {
    expect(execFileSync('/bin/sh', ['-c', `printf '%s' ${shq(s)}`], { encoding: 'utf8' })).toBe(s);
  });
});

describe('senderSnippet', () => {
  it('names the login at the receiver and remote_root = "/landing", never a spool path', () => {
    const text = senderSnippet({ peer: 'alpha', receiver: 'beta', receiverHost: 'beta.example', sshPort: 2222, spoolRoot: '/data/ferry-spool' });
    expect(text).toContain('[peers.beta]\n');
    expect(text).toContain('ssh = "ferry-in-alpha@beta.example:2222"');
    expect(text).toContain('identity = "/etc/ferry/ssh/id_ed25519"');
    expect(text).toContain('known_hosts = "/etc/ferry/ssh/known_hosts"');
    expect(text).toMatch(/^remote_root = "\/landing"/m);
    expect(text).not.toContain('/data/ferry-spool');
    expect(text).not.toContain('spool');
  });

  it('quotes a receiver name with a dot, so TOML does not read it as nested tables', () => {
    expect(senderSnippet({ peer: 'alpha', receiver: 'beta.example' })).toContain('[peers."beta.example"]');
  });
});

describe('ferry peer add', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });
  const io = () => {
    const stdout = new PassThrough();
    let text = '';
    stdout.on('data', (d: Buffer) => (text += d.toString()));
    return { io: { stdout, stderr: new PassThrough(), stdin: new PassThrough() }, text: () => text };
  };

  it('refuses without --print, saying it only prints the steps', async () => {
    const err = await peerAddCommand('alpha', {}, io().io).catch((e: unknown) => e);
    expect(isFerryError(err, 'EUSAGE') && err.message.startsWith('ferry peer add only prints the steps (pass --print)')).toBe(true);
  });

  it('prints the script for the configured spool and the sender table as comments', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-peer-add-'));
    const config = join(dir, 'ferry.toml');
    writeFileSync(config, `host = "beta"\nroot = "${dir}/spool"\nkeys = "${dir}/keys"\n`);
    writeFileSync(join(dir, 'alpha.pub'), `# alpha's key\n${KEY}\n`);
    const o = io();
    const code = await peerAddCommand('alpha', { config, print: true, publicKey: join(dir, 'alpha.pub'), quota: '1G', sshPort: '2222', receiverHost: 'beta.example' }, o.io);
    expect(code).toBe(0);
    const text = o.text();
    expect(text).toContain(`install -d -o ferry -g ferry-in-alpha -m 2770 ${dir}/spool/landing/alpha`);
    expect(text).toContain(`'restrict ${KEY}'`);
    expect(text).toContain('setquota -u ferry-in-alpha 0 1048576 0 0');
    expect(text).toContain('#   [peers.beta]\n#   ssh = "ferry-in-alpha@beta.example:2222"\n');
    expect(text).toContain('#   remote_root = "/landing"');
  });

  it('refuses to add this host as its own peer', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-peer-add-'));
    const config = join(dir, 'ferry.toml');
    writeFileSync(config, `host = "beta"\nroot = "${dir}/spool"\n`);
    const err = await peerAddCommand('beta', { config, print: true }, io().io).catch((e: unknown) => e);
    expect(isFerryError(err, 'EUSAGE') && /is this host/.test(err.message)).toBe(true);
  });
});
