// ferry doctor fails, with a fix, for each broken precondition — and passes on a healthy host.
import { chmodSync, mkdtempSync, rmSync, writeFileSync, readdirSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runChecks, type Check } from '../../src/cli/doctor.js';
import { Cluster } from '../../src/devtools/cluster.js';
import { generateKey } from '../helpers/sshd.js';

describe('ferry doctor', () => {
  let dir: string;
  const made: Cluster[] = [];
  afterEach(async () => {
    for (const c of made.splice(0)) await c.destroy();
  });

  async function fresh(): Promise<Cluster> {
    dir = mkdtempSync(join(tmpdir(), 'ferry-doctor-'));
    const c = await Cluster.create({ hosts: ['alpha', 'beta'], dir });
    made.push(c);
    return c;
  }
  const alphaLogin = (c: Cluster) => c.deployment.login('beta', 'alpha');
  const checksOf = (c: Cluster) => runChecks({ config: c.host('alpha').config });
  const failing = (checks: Check[]) => checks.filter((c) => !c.ok && !c.warning).map((c) => c.name);

  it('passes every check on a healthy host', async () => {
    const c = await fresh();
    try {
      const checks = await checksOf(c);
      expect(failing(checks)).toEqual([]);
      expect(checks.find((x) => x.name === 'beta ssh')?.detail).toMatch(/SHA256:.*pinned/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const broken: Array<[string, string, (c: Cluster) => Promise<void> | void]> = [
    ['an invalid config', 'config', (c) => writeFileSync(c.host('alpha').config, 'host = 42\n')],
    ['a spool directory open to others', 'spool', (c) => chmodSync(join(c.host('alpha').root, 'outbox'), 0o755)],
    ['a key file readable by others', 'keys', (c) => {
      const keys = c.host('alpha').keys;
      chmodSync(join(keys, readdirSync(keys)[0] as string), 0o644);
    }],
    ['no key for a routed peer', 'key alpha-beta', (c) => {
      const keys = c.host('alpha').keys;
      unlinkSync(join(keys, readdirSync(keys)[0] as string));
    }],
    ['an SSH identity readable by others', 'beta identity', async (c) => {
      const id = join(dir, 'loose_id');
      await generateKey(id);
      chmodSync(id, 0o644);
      writeFileSync(c.host('alpha').config, c.configText('alpha').replace(alphaLogin(c).identity, id));
    }],
    ['an unknown host key', 'beta ssh', (c) => {
      const other = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBQqyEMjUbKsZYlxbEJ5L5Q2G7uXLGd0C2sY4pY3oVnD';
      const kh = join(dir, 'known_hosts');
      writeFileSync(kh, `[127.0.0.1]:${alphaLogin(c).port} ${other}\n`);
      writeFileSync(c.host('alpha').config, c.configText('alpha').replace(alphaLogin(c).knownHosts, kh));
    }],
    ['an unreachable peer', 'beta ssh', (c) => writeFileSync(c.host('alpha').config, c.configText('alpha').replace(`127.0.0.1:${alphaLogin(c).port}`, '127.0.0.1:1'))],
  ];

  it.each(broken)('fails with a fix for %s', async (_what, check, breakIt) => {
    const c = await fresh();
    try {
      await breakIt(c);
      const checks = await checksOf(c);
      expect(failing(checks)).toContain(check);
      const failed = checks.find((x) => x.name === check && !x.ok);
      expect(failed?.fix ?? '').not.toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
