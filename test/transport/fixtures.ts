// Shared helpers for transport tests: fresh landing areas, deterministic files, hashing, transport factories.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SftpTransport, type ProgressFn, type PublishResult, type SftpTransportOptions, type Transport } from '../../src/transport/index.js';
import type { Sshd } from '../helpers/sshd.js';

/** Make a landing directory (0700). */
export async function makeLanding(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

/** A fresh temp directory; remove it with {@link removeDir}. */
export async function tempDir(prefix = 'ferry-transport-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Write `size` random bytes to `file` (written in 1 MiB pieces so big files do not need big buffers). */
export async function randomFile(file: string, size: number): Promise<string> {
  const piece = randomBytes(Math.min(size, 1024 * 1024));
  const parts: Buffer[] = [];
  for (let done = 0; done < size; done += piece.length) parts.push(piece.subarray(0, Math.min(piece.length, size - done)));
  // Vary each MiB so that an upload written at the wrong offset cannot pass a byte comparison.
  parts.forEach((p, i) => {
    if (p.length >= 4) {
      const copy = Buffer.from(p);
      copy.writeUInt32BE(i, 0);
      parts[i] = copy;
    }
  });
  await writeFile(file, Buffer.concat(parts), { mode: 0o600 });
  return file;
}

/** True when two files hold the same bytes (Buffer.equals: vitest's deep equality is slow on big buffers). */
export async function sameBytes(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([readFile(a), readFile(b)]);
  return x.equals(y);
}

/** SHA-256 of a file, streamed. */
export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** An SftpTransport to the test sshd with short timeouts. */
export function sftpTransportFor(sshd: Sshd, remoteRoot: string, extra: Partial<SftpTransportOptions> = {}): SftpTransport {
  return new SftpTransport({
    peer: 'beta',
    host: '127.0.0.1',
    port: sshd.port,
    username: sshd.user,
    identity: sshd.identityPath,
    knownHosts: sshd.knownHostsPath,
    remoteRoot,
    connectTimeoutMs: 10_000,
    opTimeoutMs: 10_000,
    ...extra,
  });
}

/** Upload then publish one file, as the shipper does for one bundle. */
export async function ship(t: Transport, src: string, name: string, onProgress?: ProgressFn): Promise<PublishResult> {
  await t.upload(src, name, onProgress);
  return t.publish(src, name);
}

/** Uploads in progress (`.part` files) in a landing directory. */
export async function parts(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith('.part'));
}

/** Published names (everything but uploads in progress) in a landing directory. */
export async function published(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => !n.endsWith('.part'));
}
