// A floor under the names that decide shipping order, shared by every process on the host.
//
// The acceptor ships outbox entries in name order, and a name starts with the wall-clock time it was made at. One
// process keeps its own names increasing (unique.ts), but a `ferry send` run after the clock stepped back would
// otherwise name its commit below the commits of the sends before it, and be shipped first (DESIGN §2: names that
// decide take order must sort in delivery order even when the wall clock steps back). So each order-deciding name is
// made above a floor kept in one small file, `state/name-floor`, and the floor is raised to that name before the
// name is used (a producer killed in between leaves the floor a little high, never low).
//
// The floor is written without fsync: within one boot every process sees the page cache. A power cut may lose the
// last writes, so the file records the boot it was written in (/proc/sys/kernel/random/boot_id); when that differs,
// or the file is missing or unreadable, the floor is found again from the names still waiting in the outbox — the
// only ones a new name could be shipped ahead of (an entry already shipped holds its sequence number whatever
// comes later). That listing happens once per boot.
//
// Two processes raising the floor at the same instant both re-read it just before writing and write the larger
// value, so it can only be lowered by a write that lands within that re-read window (no lock: Node has no flock):
// a floor lowered that way is still above every name made before either process started, and a third process
// would have to start inside that window with its clock stepped back to name a commit below one of theirs.
import { closeSync, constants, opendirSync, openSync, readdirSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { monotonicMicros, nameTime, raiseMicrosFloor, uniqueName } from './unique.js';

const RECORD_BYTES = 80;
/**
 * `v1 <boot id> <micros> <micros>`: the boot id is a UUID, or `-` where the system has none. The value twice: a read
 * racing another process's in-place write may see half of each, and is then told apart and read again.
 */
const RECORD_RE = /^v1 ([0-9a-f-]{1,36}) (\d{1,17}) (\d{1,17}) *\n?$/;
/** The names this host's processes make (unique.ts): only these take part in finding the floor again. */
const OWN_NAME_RE = /^\d{1,15}\.M\d{6}P\d+Q\d+R[0-9a-f]{8}\./;

let cachedBoot: string | undefined;

/** This boot's id; `FERRY_BOOT_ID_FILE` names another file (tests: a simulated power cut is a new boot). */
export function bootId(): string {
  if (cachedBoot !== undefined) return cachedBoot;
  const file = process.env.FERRY_BOOT_ID_FILE ?? '/proc/sys/kernel/random/boot_id';
  let id = '-';
  try {
    const text = readFileSync(file, 'utf8').trim().toLowerCase();
    if (/^[0-9a-f-]{1,36}$/.test(text)) id = text;
  } catch {
    // no boot id (not Linux): the floor is then found again only when its file is missing
  }
  cachedBoot = id;
  return id;
}

/** The microseconds an own name was made at. */
function micros(name: string): number {
  const [sec, usec] = nameTime(name);
  return sec * 1_000_000 + usec;
}

export class NameFloor {
  /**
   * @param path the floor file (`state/name-floor`)
   * @param waiting the directories whose entries wait to be shipped in name order (commits/new, outbox/<q>/new)
   */
  constructor(private readonly path: string, private readonly waiting: () => string[]) {}

  /**
   * A name unique on this host (see {@link uniqueName}) that sorts after every order-deciding name any process on
   * this host made before this call began, whatever the wall clock did meanwhile.
   */
  next(host: string): string {
    const fd = openSync(this.path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    try {
      const boot = bootId();
      const stored = readRecord(fd, boot);
      raiseMicrosFloor(stored ?? this.recover());
      const name = uniqueName(host);
      const again = readRecord(fd, boot) ?? 0;
      const floor = Math.max(again, micros(name));
      const record = Buffer.alloc(RECORD_BYTES, ' ');
      record.write(`v1 ${boot} ${floor} ${floor}`);
      record[RECORD_BYTES - 1] = 0x0a;
      writeSync(fd, record, 0, RECORD_BYTES, 0);
      return name;
    } finally {
      closeSync(fd);
    }
  }

  /** The floor found again from the names still waiting to be shipped (a new boot, or no floor file). */
  private recover(): number {
    let floor = monotonicMicros();
    for (const dir of this.waiting()) {
      // Streamed: a backlog of a million waiting names is never held as one array (I8).
      let d;
      try {
        d = opendirSync(dir);
      } catch {
        continue;
      }
      try {
        for (let e = d.readSync(); e !== null; e = d.readSync()) if (OWN_NAME_RE.test(e.name)) floor = Math.max(floor, micros(e.name));
      } finally {
        d.closeSync();
      }
    }
    return floor;
  }
}

/** The floor the file holds for this boot; undefined when it holds none (missing, torn three times, another boot). */
function readRecord(fd: number, boot: string): number | undefined {
  const buf = Buffer.alloc(RECORD_BYTES);
  for (let attempt = 0; attempt < 3; attempt++) {
    const n = readSync(fd, buf, 0, RECORD_BYTES, 0);
    const m = RECORD_RE.exec(buf.toString('latin1', 0, n));
    if (!m || m[1] !== boot) return undefined;
    if (m[2] !== m[3]) continue; // torn by a concurrent write: read again
    const v = Number(m[2]);
    return Number.isSafeInteger(v) ? v : undefined;
  }
  return undefined;
}

/** The waiting directories of a spool: commits/new and every outbox queue's new/. */
export function waitingDirs(commitsNew: string, outbox: string): string[] {
  const dirs = [commitsNew];
  try {
    for (const q of readdirSync(outbox)) dirs.push(join(outbox, q, 'new'));
  } catch {
    // no outbox yet
  }
  return dirs;
}
