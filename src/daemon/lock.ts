// One daemon per spool: an flock(2) on state/daemon.lock is the lock, and the control socket lives beside it.
//
// The kernel frees the flock when the process dies, however it dies, so there is no stale lock to clean after a
// kill -9; a second daemon gets ELOCKED at once, also from another network namespace. Node has no flock(2):
// util-linux's `flock -n 3` takes it on a descriptor the daemon passes it, and the lock stays with that open file
// description, the daemon's, after `flock` exits.
//
// The control socket is the file state/control.sock: in the spool's 0700 state/, so only its user (and root) can
// reach it, and nobody else can take its name first. Its holder of the lock removes one a killed daemon left. A
// request also starts with the token the daemon wrote to state/control.token (0600). Where that path would be too
// long for sun_path (a spool root past ~80 bytes), the socket is a file in /run/ferry-<uid>/ (or <tmpdir>/ferry-<uid>/),
// 0700 and checked to be this user's. Only where no flock can be taken at all (no util-linux) is an abstract socket
// named after the spool the fallback, and then also the lock: that one has no file mode, so any local user can
// connect (the token still stands) or bind its name first, and it does not lock across network namespaces.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { FerryError, errno } from '../errors.js';

const LOCK_FILE = 'daemon.lock';
const TOKEN_FILE = 'control.token';
/** `flock -E`: the exit status meaning "held by another process". */
const FLOCK_BUSY = 75;
const MAX_CONNECTIONS = 16;

const SOCKET_FILE = 'control.sock';
/** Longest socket path bound (sun_path holds 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 100;

/**
 * The control socket's address for a spool root: state/control.sock, or — when that path is too long for sun_path —
 * a file in a short directory private to this user (see {@link shortSocketDir}).
 */
export function controlAddress(root: string): string {
  const file = join(realRoot(root), 'state', SOCKET_FILE);
  if (Buffer.byteLength(file) <= MAX_SOCKET_PATH) return file;
  return join(shortSocketDir(), `${createHash('sha256').update(realRoot(root)).digest('hex').slice(0, 24)}.sock`);
}

/**
 * `/run/ferry-<uid>` (root, or wherever /run is writable), else `<tmpdir>/ferry-<uid>`: made 0700 and refused unless
 * it is a real directory of this user's that gives nothing to others, so no other local user can reach the socket
 * in it or take its name first (red team: an abstract name there could be bound first by anyone).
 */
function shortSocketDir(): string {
  const uid = process.getuid?.() ?? 0;
  const candidates = [`/run/ferry-${uid}`, join(tmpdir(), `ferry-${uid}`)];
  for (const dir of candidates) {
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      if (errno(err) !== 'EEXIST') continue; // not writable here: the next candidate
    }
    const st = lstatSync(dir);
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) {
      throw new FerryError('ESPOOL', `${dir} (where the control socket of a spool with a long path goes) is not a directory of uid ${uid} with mode 0700; another user may have made it: remove it, or use a shorter spool path`, { path: dir });
    }
    return dir;
  }
  throw new FerryError('ESPOOL', `no directory for the control socket: neither /run nor ${tmpdir()} is writable; use a shorter spool path`, {});
}

/** The abstract socket name for a spool root: the fallback (see the top of this file). */
function abstractAddress(root: string): string {
  return `\0ferry-${createHash('sha256').update(realRoot(root)).digest('hex').slice(0, 24)}`;
}

function realRoot(root: string): string {
  try {
    return realpathSync(root);
  } catch {
    return root; // not there yet: the path as given
  }
}

/**
 * Takes the spool lock; `onRequest` answers control requests (one line in, one JSON document out) that carry the
 * token. Closing the returned server releases the lock.
 */
export async function acquireLock(root: string, onRequest: (line: string) => Promise<unknown>): Promise<Server> {
  const token = randomBytes(24).toString('hex');
  let open = 0;
  const server = createServer((socket: Socket) => {
    // With the abstract fallback anyone may connect (see the top): a connection that has not sent its line within 2 s is dropped, and past 16
    // at once new ones are, so idle connections cannot use up the daemon's descriptors.
    if (open >= MAX_CONNECTIONS) {
      socket.destroy();
      return;
    }
    open += 1;
    socket.once('close', () => { open -= 1; });
    socket.setTimeout(2_000, () => socket.destroy());
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('error', () => undefined);
    socket.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        if (buf.length > 4096) socket.destroy();
        return;
      }
      const line = buf.slice(0, nl);
      const sp = line.indexOf(' ');
      if (sp < 0 || !sameToken(line.slice(0, sp), token)) {
        socket.destroy(); // not from a user who can read the spool's state
        return;
      }
      onRequest(line.slice(sp + 1))
        .then((reply) => socket.end(`${JSON.stringify(reply)}\n`))
        .catch((err: unknown) => socket.end(`${JSON.stringify({ error: String(err) })}\n`));
    });
  });
  const fd = fileLock(root);
  const address = fd === undefined ? abstractAddress(root) : controlAddress(root);
  // Holding the lock, a socket file left by a killed daemon is ours to remove (anything else there too: state/ is ours).
  if (fd !== undefined && !address.startsWith('\0')) rmSync(address, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => {
      if (fd !== undefined) closeSync(fd);
      if (errno(err) === 'EADDRINUSE') {
        reject(new FerryError('ELOCKED', `another ferry daemon is already running on spool ${root} (its control socket ${address.replace('\0', '@')} is taken)`, { path: root, cause: err }));
      } else {
        reject(err);
      }
    });
    server.listen(address, () => resolve());
  });
  try {
    if (fd !== undefined) server.once('close', () => closeSync(fd));
    // A fresh file of ours (O_EXCL, no link followed), never one a user planted while state/ was loose and holds open.
    const tokenPath = join(root, 'state', TOKEN_FILE);
    rmSync(`${tokenPath}.tmp`, { force: true });
    const tfd = openSync(`${tokenPath}.tmp`, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      writeFileSync(tfd, `${token}\n${address.replace('\0', '@')}\n`); // the client connects where this says, nowhere else
    } finally {
      closeSync(tfd);
    }
    renameSync(`${tokenPath}.tmp`, tokenPath);
  } catch (err) {
    server.close();
    throw err;
  }
  return server;
}

/**
 * flock(2) on state/daemon.lock, held by the returned descriptor (see the top of this file). Undefined where it
 * cannot be taken at all (no state/ yet, no util-linux flock): the control socket's address is then the only lock.
 */
function fileLock(root: string): number | undefined {
  const path = join(root, 'state', LOCK_FILE);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw err;
  }
  // Only a lock file of our own counts: one another user planted (while state/ was loose) could be held by them for
  // ever, or be a link to a file of theirs. It is replaced by a fresh one.
  const st = fstatSync(fd);
  if (st.uid !== (process.geteuid?.() ?? st.uid) || st.nlink !== 1) {
    closeSync(fd);
    rmSync(path, { force: true });
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  }
  const r = spawnSync('flock', ['-n', '-E', String(FLOCK_BUSY), '3'], { stdio: ['ignore', 'ignore', 'ignore', fd] });
  if (r.status === 0) return fd;
  closeSync(fd);
  if (r.error !== undefined && errno(r.error) === 'ENOENT') return undefined;
  if (r.status === FLOCK_BUSY) {
    throw new FerryError('ELOCKED', `another ferry daemon is already running on spool ${root} (it holds ${join(root, 'state', LOCK_FILE)})`, { path: root });
  }
  throw new FerryError('ELOCKED', `could not lock ${join(root, 'state', LOCK_FILE)}: flock exited ${r.status ?? r.signal}`, { path: root });
}

function sameToken(given: string, token: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The token of the spool's running daemon and the address it listens on, when this user can read them. */
function readToken(root: string): { token: string; address: string } | undefined {
  try {
    const [token, at] = readFileSync(join(root, 'state', TOKEN_FILE), 'utf8').split('\n');
    if (!token || !at) return undefined;
    return { token, address: at.startsWith('@') ? `\0${at.slice(1)}` : at };
  } catch {
    return undefined;
  }
}

/** Asks the spool's daemon something; resolves to its reply, or undefined when no daemon runs. */
export function askDaemon(root: string, request: string, timeoutMs = 2000): Promise<unknown> {
  const t = readToken(root);
  if (t === undefined) return Promise.resolve(undefined);
  return ask(t.address, t.token, request, timeoutMs);
}

function ask(address: string, token: string, request: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve) => {
    const socket = createConnection(address);
    let buf = '';
    const timer = setTimeout(() => { socket.destroy(); resolve(undefined); }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${token} ${request}\n`));
    socket.on('data', (d: string) => { buf += d; });
    socket.on('error', () => { clearTimeout(timer); resolve(undefined); });
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(buf ? JSON.parse(buf) : undefined);
      } catch {
        resolve(undefined);
      }
    });
  });
}
