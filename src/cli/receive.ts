// `ferry receive resync PEER`: the operator's answer to a channel stopped by an alarm (EDEDUPE_ROLLBACK and friends).
import { askDaemon, acquireLock } from '../daemon/lock.js';
import { FerryError } from '../errors.js';
import { OriginStates, resynced, type OriginAlarm } from '../receive/origin-state.js';
import { validateHostName } from '../spool/names.js';
import { now } from '../clock.js';
import { configFrom, openSpool, type GlobalFlags } from './context.js';
import { out, type CliIO } from './io.js';

/**
 * Clears the alarm that stops `peer`'s channel on this host; for EDEDUPE_ROLLBACK the sender's acked mark becomes
 * the delivered mark (the messages between the old mark and it are taken as delivered: look at what the inbox holds
 * first). Asks the running daemon; with none running, applies it to the spool directly, holding the daemon's lock.
 */
export async function receiveResyncCommand(peerArg: string, flags: GlobalFlags, io: CliIO): Promise<number> {
  const peer = validateHostName(peerArg, 'peer name');
  const config = await configFrom(flags);
  const live = (await askDaemon(config.root, `resync ${peer}`)) as { cleared?: OriginAlarm | null; error?: string } | undefined;
  let cleared: OriginAlarm | null | undefined;
  if (live !== undefined) {
    if (live.error !== undefined) throw new FerryError('EUSAGE', `the daemon refused the resync: ${live.error}`);
    cleared = live.cleared;
  } else {
    const spool = await openSpool(config);
    const lock = await acquireLock(config.root, async () => ({ error: 'busy: ferry receive resync' }));
    try {
      const states = new OriginStates(spool.layout.receive);
      await states.load();
      const rec = states.get(peer);
      const next = resynced(rec, now());
      if (next !== undefined) await states.save(peer, next);
      cleared = rec.alarm;
    } finally {
      await new Promise<void>((resolve) => lock.close(() => resolve()));
    }
  }
  if (cleared === null || cleared === undefined) {
    out(io, `no alarm stops the channel from ${peer}; nothing changed`);
    return 0;
  }
  out(io, `cleared ${cleared.code} on the channel from ${peer} (epoch ${cleared.epoch}${cleared.code === 'EDEDUPE_ROLLBACK' ? `: delivered mark set to ${cleared.acked}, what ${peer} proved delivered` : ''}); delivery from ${peer} resumes`);
  return 0;
}
