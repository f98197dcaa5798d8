// Opens the local file a transport uploads: read-only, never through a symlink, regular files only; reads it exactly.
import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { errno, FerryError } from '../errors.js';

/** An open local file and the size it had when opened. */
export interface LocalSource {
  handle: FileHandle;
  size: number;
  path: string;
}

/** Open `file` read-only (`O_NOFOLLOW`) and check it is a regular file. The file itself is never modified. */
export async function openLocalSource(file: string, peer: string): Promise<LocalSource> {
  let handle: FileHandle;
  try {
    handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (err) {
    if (errno(err) === 'ELOOP') {
      throw new FerryError('ESPOOL_SYMLINK', `refusing to upload ${file} to peer ${peer}: it is a symlink`, { path: file, peer, syscall: 'open', cause: err });
    }
    throw new FerryError('ESPOOL', `cannot open ${file} for upload to peer ${peer}: ${(err as Error).message}`, { path: file, peer, syscall: 'open', cause: err });
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      throw new FerryError('ESPOOL_NOT_FILE', `refusing to upload ${file} to peer ${peer}: not a regular file`, { path: file, peer });
    }
    return { handle, size: st.size, path: file };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** Fill `buf` from `position` or throw ESPOOL if the file ends early (it changed under us). */
export async function readExactly(src: LocalSource, buf: Buffer, position: number, peer: string): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await src.handle.read(buf, done, buf.length - done, position + done));
    } catch (err) {
      throw new FerryError('ESPOOL', `cannot read ${src.path} for upload to peer ${peer}: ${(err as Error).message}`, { path: src.path, peer, syscall: 'read', cause: err });
    }
    if (bytesRead === 0) {
      throw new FerryError('ESPOOL', `${src.path} shrank while being uploaded to peer ${peer} (expected ${src.size} bytes)`, { path: src.path, peer });
    }
    done += bytesRead;
  }
}
