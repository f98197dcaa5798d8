// What to do with a verified bundle header, given what was delivered from its origin: the rules of order and dedupe in one place.
//
// Strict order (I9): a bundle is delivered only when it starts right after the delivered mark of its epoch, or
// when it starts a newer epoch at sequence 1 (which closes the older one). Anything ahead waits, however long;
// only the sender's authenticated gap record passes a missing sequence. Epoch numbers only grow: a bundle of an
// epoch below the current one is refused as closed, so no epoch ever needs to be remembered to refuse its replay.
// A bundle whose sequences were all delivered already is a retransmission when its message ids match the ones
// delivered, and an alarm (a sender restored from a backup reusing sequence numbers) when they do not.
import { FerryError } from '../errors.js';
import type { BundleHeader } from '../envelope/index.js';
import type { OriginAlarm, OriginRecord } from './origin-state.js';
import { now } from '../clock.js';

/** What the receiver does with a bundle. */
export type Decision =
  /** Deliver it. `newEpoch`: it starts a newer epoch (closing the current one). Messages up to `skipUpTo` were delivered by an earlier round of this same bundle. */
  | { kind: 'deliver'; newEpoch: boolean; skipUpTo: number }
  /** Leave it where it is: it waits for an earlier sequence, or the channel is stopped. */
  | { kind: 'hold'; code: 'EGAP' | OriginAlarm['code']; reason: string; seq: number }
  /** Every sequence in it was delivered already: compare its ids with the ones delivered. */
  | { kind: 'duplicate' }
  /** Refuse it (quarantine) with this error. */
  | { kind: 'refuse'; err: FerryError }
  /** Stop the channel: the receiver's state disagrees with the sender's proof. */
  | { kind: 'alarm'; alarm: OriginAlarm };

/** The last sequence a header covers. */
export function lastOf(h: BundleHeader): number {
  return h.firstSeq + h.count - 1;
}

/**
 * Decides from `rec` (what was delivered from `peer`) what to do with a bundle found in `peer`'s landing directory
 * whose verified header is `h` (its `epoch` and `acked` set, as the parser guarantees).
 */
export function decide(rec: OriginRecord, h: BundleHeader, peer: string): Decision {
  const epoch = h.epoch ?? 1;
  const acked = h.acked ?? 0;
  if (h.origin !== peer) {
    return { kind: 'refuse', err: new FerryError('EENVELOPE_ORIGIN', `a bundle in the landing directory of ${peer} claims origin ${h.origin}; a peer's login delivers only its own messages`, { peer }) };
  }
  if (rec.alarm !== null) {
    return { kind: 'hold', code: rec.alarm.code, reason: rec.alarm.reason, seq: (rec.current?.hwm ?? 0) + 1 };
  }
  const cur = rec.current;
  const rollback = (reason: string): Decision => ({
    kind: 'alarm',
    alarm: { code: 'EDEDUPE_ROLLBACK', reason, since: now(), epoch, channel: h.channel, acked },
  });
  if (cur === null || epoch > cur.epoch) {
    // A new epoch starts at 1, and its sender cannot have seen a receipt for it yet.
    if (acked > 0) {
      return rollback(`${peer} says this host delivered sequences 1..${acked} of epoch ${epoch}, of which it has no record: its receive state was lost or restored from an older copy; once you know which messages are missing, run \`ferry receive resync ${peer}\``);
    }
    if (h.firstSeq === 1) return { kind: 'deliver', newEpoch: true, skipUpTo: 0 };
    return { kind: 'hold', code: 'EGAP', reason: `waiting for sequence 1 of epoch ${epoch}`, seq: 1 };
  }
  if (epoch < cur.epoch) {
    return { kind: 'refuse', err: new FerryError('EEPOCH_CLOSED', `the bundle belongs to epoch ${epoch} of ${peer}'s channel, which epoch ${cur.epoch} closed; a closed epoch is never delivered again`, { peer }) };
  }
  if (h.channel !== cur.channel) {
    return { kind: 'refuse', err: new FerryError('EEPOCH_CONFLICT', `the bundle claims epoch ${epoch} of ${peer}'s channel under id ${h.channel}, but that epoch is ${cur.channel}: two senders use one name, or one was restored and re-provisioned at once`, { peer }) };
  }
  if (acked > cur.hwm) {
    return rollback(`${peer} says this host delivered sequences up to ${acked} of epoch ${epoch}, but its record ends at ${cur.hwm}: its receive state was restored from an older copy; once you know which messages are missing, run \`ferry receive resync ${peer}\``);
  }
  const next = cur.hwm + 1;
  if (h.firstSeq > next) return { kind: 'hold', code: 'EGAP', reason: `waiting for sequence ${next} of epoch ${epoch}`, seq: next };
  if (lastOf(h) <= cur.hwm) return { kind: 'duplicate' };
  return { kind: 'deliver', newEpoch: false, skipUpTo: cur.hwm };
}
