// Opening a spool as an operator would: writers must be its owner, modes granted for drops are kept,
// inspect-only opens change nothing, and a bind mount inside the spool is found by a link probe.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { probeOneMount } from '../../src/spool/mount-probe.js';
import { Spool } from '../../src/spool/spool.js';
import { filesBelow, openSpool, useTempDir } from '../fixtures/spool.js';

const tmp = useTempDir();
const modeOf = (path: string) => statSync(path).mode & 0o7777;
const NOBODY = 65534;

describe('Spool.open: who may write', () => {
  it('opens a spool owned by the user it runs as (root on root\'s spool included)', async () => {
    const spool = await openSpool(tmp.path);
    expect(statSync(spool.root).uid).toBe(process.geteuid?.());
    await expect(Spool.open(spool.root, { host: 'alpha' })).resolves.toBeInstanceOf(Spool);
  });

  it('refuses a writer whose user is not the spool\'s owner with ESPOOL_OWNER naming the owner and sudo -u, changing nothing', async () => {
    const spool = await openSpool(tmp.path);
    chownSync(spool.root, NOBODY, NOBODY);
    chmodSync(spool.layout.outbox, 0o755); // a writer would tighten it: the refusal comes first
    const err = await Spool.open(spool.root, { host: 'alpha' }).catch((e: unknown) => e);
    expect(isFerryError(err, 'ESPOOL_OWNER')).toBe(true);
    expect((err as Error).message).toContain(`spool ${spool.root} belongs to uid ${NOBODY} (nobody)`);
    expect((err as Error).message).toContain('`sudo -u nobody ferry …`');
    expect(modeOf(spool.layout.outbox)).toBe(0o755);
  });

  it('refuses `ferry init` (create) on an existing root owned by someone else', async () => {
    const root = join(tmp.path, 'spool');
    mkdirSync(root, { mode: 0o700 });
    chownSync(root, NOBODY, NOBODY);
    const err = await Spool.open(root, { host: 'alpha', create: true }).catch((e: unknown) => e);
    expect(isFerryError(err, 'ESPOOL_OWNER')).toBe(true);
    expect(readdirSync(root)).toEqual([]);
  });

  it('lets anyone who can read it open a spool inspect-only (status, doctor), whoever owns it', async () => {
    const spool = await openSpool(tmp.path);
    chownSync(spool.root, NOBODY, NOBODY);
    await expect(Spool.open(spool.root, { host: 'alpha', inspect: true })).resolves.toBeInstanceOf(Spool);
  });
});

describe('Spool.open: modes', () => {
  it('keeps 0710 on the root and drop/ and 2770 on drop/<queue>/ (group access for legacy drops), and tightens anything else', async () => {
    const spool = await openSpool(tmp.path);
    const queueDir = join(spool.layout.drop, 'reports');
    mkdirSync(queueDir);
    chmodSync(spool.root, 0o710);
    chmodSync(spool.layout.drop, 0o710);
    chmodSync(queueDir, 0o2770);
    chmodSync(spool.layout.inbox, 0o710); // only the root and drop/ may
    await Spool.open(spool.root, { host: 'alpha' });
    expect(modeOf(spool.root)).toBe(0o710);
    expect(modeOf(spool.layout.drop)).toBe(0o710);
    expect(modeOf(queueDir)).toBe(0o2770);
    expect(modeOf(spool.layout.inbox)).toBe(0o700);

    chmodSync(spool.root, 0o755); // more than g+x: only the g+x stays
    await Spool.open(spool.root, { host: 'alpha' });
    expect(modeOf(spool.root)).toBe(0o710);
  });

  it('changes no mode and runs no recovery when opened inspect-only', async () => {
    const spool = await openSpool(tmp.path);
    chmodSync(spool.layout.outbox, 0o755);
    const debris = join(spool.layout.commitsTmp, 'old-debris');
    writeFileSync(debris, 'x');
    const old = new Date(Date.now() - 72 * 3600_000);
    utimesSync(debris, old, old);
    await Spool.open(spool.root, { host: 'alpha', inspect: true });
    expect(modeOf(spool.layout.outbox)).toBe(0o755);
    expect(existsSync(debris)).toBe(true);
  });
});

describe('Spool.open: one mount', () => {
  it('leaves nothing behind from its link probe', async () => {
    const spool = await openSpool(tmp.path);
    await Spool.open(spool.root, { host: 'alpha' });
    await probeOneMount(spool.layout);
    expect(filesBelow(spool.root).filter((p) => p.includes('probe'))).toEqual([]);
  });

  it('refuses a spool whose inbox/ is a bind mount (same file system, another mount) with ESPOOL_XDEV', async () => {
    const spool = await openSpool(tmp.path);
    const elsewhere = join(tmp.path, 'elsewhere-inbox');
    mkdirSync(elsewhere, { recursive: true, mode: 0o700 });
    chmodSync(elsewhere, 0o700);
    // Needs root (tests and CI run as root): without it the mount fails and so does this test, saying why.
    execFileSync('mount', ['--bind', elsewhere, spool.layout.inbox], { stdio: 'ignore' });
    try {
      expect(statSync(spool.layout.inbox).dev).toBe(statSync(spool.layout.state).dev); // st_dev cannot tell
      const err = await Spool.open(spool.root, { host: 'alpha' }).catch((e: unknown) => e);
      expect(isFerryError(err, 'ESPOOL_XDEV')).toBe(true);
      expect((err as Error).message).toContain('share one mount');
      expect(readdirSync(elsewhere)).toEqual([]);
    } finally {
      execFileSync('umount', [spool.layout.inbox]);
    }
    await expect(Spool.open(spool.root, { host: 'alpha' })).resolves.toBeInstanceOf(Spool);
  });
});
