// `ferry flush`: wait until every committed message is durable at every peer it is routed to.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '../errors.js';
import { listDir } from '../maildir/fsx.js';
import { parseBundleName } from '../envelope/bundle-name.js';
import type { Spool } from '../spool/spool.js';
import { configFrom, openSpool, type GlobalFlags } from './context.js';
import { out, type CliIO } from './io.js';

/** Messages not yet durable at a peer: outbox entries plus messages in channel bundles. */
export async function pending(spool: Spool): Promise<{ outbox: number; channels: number }> {
  let outbox = 0;
  for (const d of (await spool.outbox.depths()).values()) outbox += d.messages;
  let channels = 0;
  for (const peer of await listDir(spool.layout.channels)) {
    for (const n of await listDir(join(spool.layout.channel(peer), 'out'))) {
      const p = parseBundleName(n);
      if (p && !p.gap) channels += p.count; // a bundle leaves out/ only once the peer's receipt proves it delivered
    }
  }
  return { outbox, channels };
}

/** Every dead-letter reason file under state/dead/ (outbound: given-up bundles, poison commits, refused drops). */
export async function deadLetters(spool: Spool): Promise<string[]> {
  const out: string[] = [];
  for (const d of await listDir(spool.layout.deadOut)) {
    for (const n of await listDir(join(spool.layout.deadOut, d)).catch(() => [] as string[])) if (n.endsWith('.reason.json')) out.push(join(spool.layout.deadOut, d, n));
  }
  return out;
}

/** The one-sentence error for dead letters that appeared while flushing: given up is not delivered. */
async function deadLetterError(paths: string[]): Promise<FerryError> {
  let why = '';
  try {
    const r = JSON.parse(await readFile(paths[0] as string, 'utf8')) as { reason?: string };
    if (typeof r.reason === 'string') why = `: ${r.reason}`;
  } catch {
    // unreadable: the path says enough
  }
  return new FerryError('EDEAD_LETTER', `flush found ${paths.length} new dead letter(s) instead of deliveries (${paths[0]}${why}); the rest is durable at its peers; see \`ferry status\` and the reason files under state/dead/`, { path: paths[0] });
}

/**
 * Waits for the outbox and channels to drain; ETIMEOUT after --timeout seconds. Progress on a TTY only. A message
 * that drains because it was given up (a dead letter) is not durable at its peer: flush then fails with EDEAD_LETTER.
 */
export async function flushCommand(flags: GlobalFlags & { timeout?: string }, io: CliIO): Promise<number> {
  const timeoutS = flags.timeout === undefined ? Number.POSITIVE_INFINITY : Number(flags.timeout);
  if (!(timeoutS >= 0)) throw new FerryError('EUSAGE', `--timeout expects a number of seconds, got ${JSON.stringify(flags.timeout)}`);
  const config = await configFrom(flags);
  const spool = await openSpool(config, { inspect: true });
  const deadline = Date.now() + timeoutS * 1000;
  const deadBefore = new Set(await deadLetters(spool));
  const tty = io.stderr.isTTY === true;
  let first: number | undefined;
  let bar: import('cli-progress').SingleBar | undefined;
  try {
    for (;;) {
      const p = await pending(spool);
      const left = p.outbox + p.channels;
      if (first === undefined) {
        first = left;
        if (tty && left > 0) {
          const { SingleBar, Presets } = await import('cli-progress');
          bar = new SingleBar({ format: 'flushing [{bar}] {value}/{total} messages shipped | {eta_formatted} left', stream: io.stderr as NodeJS.WriteStream }, Presets.shades_classic);
          bar.start(left, 0);
        }
      }
      bar?.setTotal(Math.max(first, left));
      bar?.update(Math.max(0, first - left));
      if (left === 0) {
        bar?.stop();
        const fresh = (await deadLetters(spool)).filter((d) => !deadBefore.has(d));
        if (fresh.length > 0) throw await deadLetterError(fresh);
        if (!tty) out(io, 'flushed: every committed message is durable at its peers');
        return 0;
      }
      if (Date.now() >= deadline) {
        bar?.stop();
        throw new FerryError('ETIMEOUT', `flush timed out with ${left} message(s) not yet durable at their peers (${p.outbox} in the outbox, ${p.channels} in channels)`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    bar?.stop();
  }
}
