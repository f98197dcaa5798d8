// One daemon per spool: an abstract Unix socket named after the spool is the lock (and the control socket).
//
// The kernel frees an abstract socket when its process dies, however it dies, so there is no stale
// lock file to clean after a kill -9; a second daemon gets EADDRINUSE at once.
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { FerryError, errno } from '../errors.js';

/** The abstract socket address of the daemon for a spool root. */
export function controlAddress(root: string): string {
  let real = root;
  try {
    real = realpathSync(root);
  } catch {
    // not there yet: use the path as given
  }
  return `\0ferry-${createHash('sha256').update(real).digest('hex').slice(0, 24)}`;
}

/** Takes the spool lock; `onRequest` answers control requests (one line in, one JSON document out). */
export async function acquireLock(root: string, onRequest: (line: string) => Promise<unknown>): Promise<Server> {
  const server = createServer((socket: Socket) => {
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
      onRequest(line)
        .then((reply) => socket.end(`${JSON.stringify(reply)}\n`))
        .catch((err: unknown) => socket.end(`${JSON.stringify({ error: String(err) })}\n`));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => {
      if (errno(err) === 'EADDRINUSE') {
        reject(new FerryError('ELOCKED', `another ferry daemon is already running on spool ${root}`, { path: root, cause: err }));
      } else {
        reject(err);
      }
    });
    server.listen(controlAddress(root), () => resolve());
  });
  return server;
}

/** Asks the spool's daemon something; resolves to its reply, or undefined when no daemon runs. */
export function askDaemon(root: string, request: string, timeoutMs = 2000): Promise<unknown> {
  return new Promise((resolve) => {
    const socket = createConnection(controlAddress(root));
    let buf = '';
    const timer = setTimeout(() => { socket.destroy(); resolve(undefined); }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${request}\n`));
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
