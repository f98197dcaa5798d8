// The name a message carries while leased: `<name>~P<pid>[-<token>][~T<txid>]`; its expiry is the file's mtime.
//
// The lease is the rename new/<name> → lease/<lease name>: atomic, so exactly one taker wins.
// The taker then sets the file's mtime to the lease's expiry, so any process can see an expired
// lease without asking its owner, and extending a lease does not move the file (FERRY_FILE stays
// valid while an --exec command runs). Until the mtime is set, the rename's ctime protects the
// lease for CLAIM_GRACE_MS. The random `-<token>` gives every take its own lease name: a holder whose
// lease expired must not commit, extend or abort the lease of whoever took the message next — even in
// the same process, or in another container with the same pid. `~T<txid>` marks a lease whose
// transaction is committing. Its fate is decided by one rename of the transaction's file
// state/commits/tmp/<txid>, which only one process can win: the transaction renaming it into
// commits/new/ (or unlinking it, with no sends) commits; a reclaimer renaming it to
// `<txid>.aborted` aborts. So `<txid>` in tmp/ means undecided, `<txid>.aborted` aborted, neither committed.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';

const LEASE_RE = /^(.+)~P(\d{1,10})(?:-([0-9a-f]{1,32}))?(?:~T([A-Za-z0-9._-]{1,200}))?$/;

/** How long a just-claimed lease is safe before its owner has stamped the expiry. */
export const CLAIM_GRACE_MS = 10_000;

/** A parsed lease name. */
export interface LeaseName {
  /** The message's name in new/. */
  name: string;
  /** The taker's pid (informational). */
  pid: number;
  /** Random per take, so that two takes of one message never share a lease name. */
  token?: string;
  /** Set while the owning transaction commits. */
  txid?: string;
}

/** Formats a lease name. */
export function formatLease(lease: LeaseName): string {
  const base = `${lease.name}~P${lease.pid}${lease.token === undefined ? '' : `-${lease.token}`}`;
  return lease.txid === undefined ? base : `${base}~T${lease.txid}`;
}

/** Parses a lease name, or returns undefined for anything else. */
export function parseLease(leaseName: string): LeaseName | undefined {
  const m = LEASE_RE.exec(leaseName);
  if (!m || m[1] === undefined) return undefined;
  const lease: LeaseName = { name: m[1], pid: Number(m[2]) };
  if (m[3] !== undefined) lease.token = m[3];
  if (m[4] !== undefined) lease.txid = m[4];
  return lease;
}

/**
 * The name in state/commits/tmp/ of the record that transaction `txid` was aborted by a reclaimer
 * (its commit file, renamed). It stays while a lease marked `~T<txid>` may remain.
 */
export function abortedCommitName(txid: string): string {
  return `${txid}.aborted`;
}

/** A fresh lease for message `name`, taken by this process. */
export function newLease(name: string): LeaseName {
  return { name, pid: process.pid, token: randomBytes(4).toString('hex') };
}

/** Stamps a lease file with its expiry (as mtime). */
export async function stampExpiry(path: string, expires: number): Promise<void> {
  const t = new Date(expires);
  await fsp.utimes(path, t, t);
}

/**
 * When the lease on a file with these times expires, ms since the epoch. A stamped lease has its
 * mtime set to an expiry later than the stamping (its ctime); an unstamped one still carries its
 * write time as mtime, so the claim's ctime plus a grace period counts instead. The comparison is
 * strict: the file system's coarse clock often gives a message claimed right after it was written
 * the same mtime and ctime, and that must not read as a lease that expired when it was written.
 */
export function leaseExpiry(st: { mtimeMs: number; ctimeMs: number }): number {
  return st.mtimeMs > st.ctimeMs ? st.mtimeMs : st.ctimeMs + CLAIM_GRACE_MS;
}
