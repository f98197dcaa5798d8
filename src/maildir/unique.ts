// Maildir-style unique names that also sort in creation order: `<sec>.M<usec>P<pid>Q<seq>R<rand>.<host>`.
import { randomBytes } from 'node:crypto';
import { now as clockNow } from '../clock.js';

let lastMicros = 0;
let sequence = 0;
/** Random bytes drawn in bulk: one randomBytes call per name cost ~30 µs, a tenth of delivering a small message. */
let pool = Buffer.alloc(0);
let poolOffset = 0;

function randomHex4(): string {
  if (poolOffset + 4 > pool.length) {
    pool = randomBytes(4096);
    poolOffset = 0;
  }
  poolOffset += 4;
  return pool.toString('hex', poolOffset - 4, poolOffset);
}

/**
 * Microseconds since the epoch, strictly increasing within this process even if the wall clock
 * steps back (a clock jump must not reorder one producer's messages).
 */
export function monotonicMicros(): number {
  const now = clockNow() * 1000 + Math.floor((performance.now() % 1) * 1000);
  lastMicros = now > lastMicros ? now : lastMicros + 1;
  return lastMicros;
}

/**
 * Raises the floor of {@link monotonicMicros} (never lowers it): a process that restarts with its clock stepped back
 * continues above the names it made before (the receiver persists the floor with its delivered state, so inbox
 * names keep sorting in delivery order across restarts).
 */
export function raiseMicrosFloor(micros: number): void {
  if (Number.isSafeInteger(micros) && micros > lastMicros) lastMicros = micros;
}

/**
 * A name unique on this host and never reused (time, pid, per-process sequence, randomness, host),
 * as the maildir convention asks. Names made by one process sort in the order they were made.
 */
export function uniqueName(host: string): string {
  const micros = monotonicMicros();
  const sec = Math.floor(micros / 1_000_000);
  const usec = String(micros % 1_000_000).padStart(6, '0');
  sequence += 1;
  return `${sec}.M${usec}P${process.pid}Q${sequence}R${randomHex4()}.${host}`;
}

const NAME_TIME_RE = /^(\d{1,15})\.(?:M(\d{1,6}))?/;

/** The (seconds, microseconds) a maildir name was made at, as far as its name tells; names without a time sort last. */
export function nameTime(name: string): [number, number] {
  const m = NAME_TIME_RE.exec(name);
  if (!m) return [Number.MAX_SAFE_INTEGER, 0];
  // `M<usec>` is a count of microseconds, unpadded in classic names (Dovecot writes `M5` for 5 µs): compare it by value.
  return [Number(m[1]), m[2] === undefined ? 0 : Number(m[2])];
}

/** Orders maildir names oldest first: by the time in the name, then by the whole name. */
export function compareNames(a: string, b: string): number {
  const [as, au] = nameTime(a);
  const [bs, bu] = nameTime(b);
  if (as !== bs) return as - bs;
  if (au !== bu) return au - bu;
  return a < b ? -1 : a > b ? 1 : 0;
}
