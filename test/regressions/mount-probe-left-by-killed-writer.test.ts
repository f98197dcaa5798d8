// A writer SIGKILLed while opening the spool (its link probe half done) left `.ferry-mount-probe.*`
// links in landing/new, the queues and drop/ that nothing removed; the long chaos run stalled on one.
import { mkdtempSync, readdirSync, rmSync, writeFileSync, linkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PROBE_PREFIX, probeTargets } from '../../src/spool/mount-probe.js';
import { Spool } from '../../src/spool/spool.js';

describe('mount probes left by a killed writer', () => {
  let dir = '';
  afterEach(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('are removed by recovery once their process is gone; a live process\'s probe is left alone', async () => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-probe-'));
    const spool = await Spool.open(join(dir, 'spool'), { host: 'alpha', create: true });
    const deadPid = 2 ** 22 + 12345; // above pid_max's default range: no such process
    const dead = `${PROBE_PREFIX}${deadPid}.abcdefgh`;
    const live = `${PROBE_PREFIX}${process.pid}.ijklmnop`;
    for (const name of [dead, live]) {
      const source = join(spool.layout.commitsTmp, name);
      writeFileSync(source, '');
      for (const d of probeTargets(spool.layout)) linkSync(source, join(d, name));
    }
    await spool.recover();
    for (const d of [...probeTargets(spool.layout), spool.layout.commitsTmp]) {
      const names = readdirSync(d).filter((n) => n.startsWith(PROBE_PREFIX));
      expect(names).toEqual([live]);
    }
  });
});
