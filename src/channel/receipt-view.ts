// Reading the peer's receipt against our own channel: which bundles it proves delivered, and which alarms it raises.
import { openReceipt, type KeyLookup, type Receipt, type ReceiptRefusal, type BundleNameParts, RECEIPT_MAX_BYTES } from '../envelope/index.js';
import { isFerryError } from '../errors.js';
import type { Transport } from '../transport/transport.js';
import type { AckedState, ChannelState } from './channel-state.js';

/** What a receipt means for this channel. */
export type ReceiptVerdict =
  /** Consistent: `hwm` of our epoch is proven delivered (0: nothing yet). */
  | { kind: 'ok'; hwm: number }
  /** Our epoch is closed at the receiver (a newer one of ours, or ours is unknown and older): re-seal into a newer epoch. */
  | { kind: 'closed'; floor: number; why: string }
  /** The receiver delivered more of our epoch than we ever sealed: we were restored from a backup. */
  | { kind: 'restored'; floor: number; why: string }
  /** The receiver knows less than it once proved to us: its state was lost or rolled back. */
  | { kind: 'rollback'; why: string };

/** Reads and verifies the peer's receipt; undefined when there is none yet, or what is there does not verify (it proves nothing). */
export async function fetchReceipt(transport: Transport, keys: KeyLookup, self: string): Promise<Receipt | undefined> {
  const bytes = await transport.readReceipt(RECEIPT_MAX_BYTES);
  if (bytes === undefined || bytes.length === 0) return undefined;
  try {
    return openReceipt(bytes, keys, self, transport.peer);
  } catch (err) {
    // Not a receipt the peer sealed for us (our own login can put anything there, and the peer rewrites it on its
    // next pass): it proves nothing, and must not stop shipping either.
    if (isFerryError(err)) return undefined;
    throw err;
  }
}

/** Judges `r` against our channel state and what an earlier receipt proved. */
export function judge(r: Receipt, state: ChannelState, acked: AckedState | undefined): ReceiptVerdict {
  const cur = r.current;
  const mine = (m: { epoch: number; channel: string } | null): m is { epoch: number; channel: string; hwm: number } => m !== null && m.epoch === state.epoch && m.channel === state.channel;
  const known = mine(cur) ? cur.hwm : mine(r.previous) ? r.previous.hwm : undefined;
  const newer = cur !== null && (cur.epoch > state.epoch || (cur.epoch === state.epoch && cur.channel !== state.channel));
  if (acked !== undefined && acked.epoch === state.epoch && acked.channel === state.channel && acked.hwm > 0 && !(known === undefined && newer)) {
    if (known === undefined || known < acked.hwm) {
      return { kind: 'rollback', why: `${r.origin} once proved sequences up to ${acked.hwm} of epoch ${state.epoch} delivered, and now says ${known === undefined ? 'nothing of it' : `only ${known}`}${r.instance !== acked.instance ? ' (its receive state was made anew)' : ''}: its state was lost or restored from an older copy` };
    }
  }
  if (mine(cur) && cur.hwm > state.nextSeq - 1) {
    return { kind: 'restored', floor: state.epoch, why: `${r.origin} delivered sequences up to ${cur.hwm} of epoch ${state.epoch}, but this host has sealed only up to ${state.nextSeq - 1}: it was restored from a backup and would reuse sequence numbers` };
  }
  if (newer) return { kind: 'closed', floor: (cur as { epoch: number }).epoch, why: `${r.origin} delivers epoch ${(cur as { epoch: number }).epoch} of this channel, which is past ours (${state.epoch})` };
  // Ours, or not started yet at the receiver (a new epoch): what it proves so far.
  return { kind: 'ok', hwm: known ?? 0 };
}

/** Whether a receipt proves the bundle `p` delivered: our epoch's mark covers it, or the epoch we closed covered it. */
export function covers(r: Receipt | undefined, p: BundleNameParts): boolean {
  if (r === undefined) return false;
  const last = p.firstSeq + p.count - 1;
  for (const m of [r.current, r.previous]) {
    if (m !== null && m.epoch === p.epoch && m.channel === p.channel && m.hwm >= last) return true;
  }
  return false;
}

/** Refusal codes that are final: the sender gives the bundle up (dead letter + gap record) instead of uploading it again. */
export const FINAL_REFUSALS: ReadonlySet<string> = new Set(['EENVELOPE_TOO_LARGE', 'EENVELOPE_BOMB', 'EENVELOPE_QUEUE', 'EKEY_EXPIRED']);
/** Refusals that say our epoch is over: re-seal into a newer one. */
export const EPOCH_REFUSALS: ReadonlySet<string> = new Set(['EEPOCH_CLOSED', 'EEPOCH_CONFLICT', 'ESEQ_REUSE']);

/** Whether refusal `f` is about the bundle or gap record named by `p` (a gap record and its bundle share their sequences). */
export function refusalMatches(f: ReceiptRefusal, p: BundleNameParts): boolean {
  return p.epoch === f.epoch && p.channel === f.channel && p.firstSeq === f.firstSeq && p.count === f.count && p.gap === (f.gap ?? false);
}

/**
 * Whether a refusal gives our bundle up for good (dead letter + gap record). Only a final code, and only when it is
 * about our own bytes: the refused bytes authenticated (the receiver then names the bundle by its sealed header), or
 * we can check the cause on our copy — an upload cut for its size, when ours is larger than the receiver's limit; a key
 * the receiver calls expired, when ours says so too. A refusal of an entry a peer's login could have made up under our
 * name (a planted oversized upload, junk naming an expired key) is answered by uploading again, never by giving up.
 */
export function refusalIsFinal(f: ReceiptRefusal, own: { size: number | undefined; keyExpired: boolean }): boolean {
  if (!FINAL_REFUSALS.has(f.code)) return false;
  if (f.authentic === true) return true;
  if (f.code === 'EENVELOPE_TOO_LARGE') return f.limit !== undefined && own.size !== undefined && own.size > f.limit;
  if (f.code === 'EKEY_EXPIRED') return own.keyExpired;
  return false;
}
