// Whether a message's metadata can ever be sealed: checked by `send` (refused at once) and by the acceptor (dead-lettered, never retried).
import { checkMessageMeta } from './validate.js';
import { JSON_FRAME_MAX, metaJson } from './wire-format.js';
import { messageOf } from '../errors.js';

/**
 * Why a message with this metadata can never be sealed — its fields do not validate, or it does not fit one
 * sealed frame even with the longest sequence number and a compression mark — or undefined when it can.
 */
export function unsealableReason(queue: string, id: string, headers: Record<string, string>, committed: number, size: number): string | undefined {
  try {
    const meta = checkMessageMeta({ seq: 1, queue, id, headers, committed, size }, 'seal');
    const bytes = metaJson({ ...meta, seq: Number.MAX_SAFE_INTEGER, compression: 'gzip' }).length;
    if (bytes > JSON_FRAME_MAX) return `its metadata (headers included) encodes to ${bytes} bytes, and at most ${JSON_FRAME_MAX} fit in a sealed frame`;
    return undefined;
  } catch (err) {
    return `it cannot be sealed: ${messageOf(err)}`;
  }
}
