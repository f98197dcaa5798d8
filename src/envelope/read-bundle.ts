// Opens a sealed bundle as it streams in: verifies, parses, inflates, and hands each message to the caller's handler.

import { FerryError } from '../errors.js';
import { inflateStream, inflateSync } from './decompress.js';
import { BundleParser, markAuthentic, NEED_INPUT, type ParseEvent } from './parser.js';
import { concatBytes } from './sealer.js';
import { sodiumReady } from './sodium.js';
import type { BundleHandler, BundleHeader, KeyLookup, Limits, MessageMeta, PayloadSink } from './types.js';
import { checkSelf, resolveLimits } from './validate.js';

/** Compressed payloads up to this size are inflated in one call (a zlib stream costs ~0.3 ms to set up)… */
const SYNC_INFLATE_MAX_SIZE = 256 * 1024;
/** …as long as their compressed form is no bigger than this; beyond, they stream. */
const SYNC_INFLATE_MAX_COMPRESSED = 320 * 1024;

/**
 * Reads one sealed bundle from `input` and hands its messages to `handler`, in order, as they verify.
 *
 * Checks: magic, version, mode; the key named in the clear exists (`EKEY_UNKNOWN`); every byte
 * authenticates (`EENVELOPE_MAC`); the key binds exactly {origin, self} (`EENVELOPE_ORIGIN`); the
 * destination is `self` (`EENVELOPE_DEST`); message count and seqs match the header; each payload is
 * exactly its declared size (`EENVELOPE_FORMAT`, `EENVELOPE_BOMB` when it inflates past it);
 * nothing follows the end (`EENVELOPE_FORMAT`); the input does not stop early (`EENVELOPE_TRUNCATED`).
 * Memory stays bounded whatever the bundle size (one 64 KiB chunk, or 1 MiB for a secretbox bundle).
 *
 * No plaintext reaches the handler before the MAC covering it has verified. But a secretstream bundle
 * is verified chunk by chunk and truncation only shows at the end: everything the handler received is
 * provisional until the returned promise resolves (with the header). On failure the open payload
 * sink's `abort` is called, the input is closed, and the promise rejects. Defects of the bundle are
 * always a `FerryError`; errors thrown by `input`, `keys` or `handler` come out unchanged.
 */
export async function readSealedBundle(
  input: AsyncIterable<Uint8Array>,
  keys: KeyLookup,
  self: string,
  handler: BundleHandler,
  limits?: Partial<Limits>,
): Promise<BundleHeader> {
  await sodiumReady();
  const resolved = resolveLimits(limits);
  const parser = new BundleParser(keys, checkSelf(self), resolved, handler.role ?? 'receiver');
  const it = input[Symbol.asyncIterator]();
  let inputDone = false;

  const nextEvent = async (): Promise<ParseEvent> => {
    for (;;) {
      const ev = parser.next();
      if (ev !== NEED_INPUT) return ev;
      if (inputDone) {
        parser.end();
        continue;
      }
      const r = await it.next();
      if (r.done === true) {
        inputDone = true;
        parser.end();
      } else {
        parser.push(r.value);
      }
    }
  };

  let sink: PayloadSink | undefined;
  let header: BundleHeader | undefined;
  try {
    for (;;) {
      const ev = await nextEvent();
      switch (ev.kind) {
        case 'header':
          header = ev.header;
          await handler.onHeader?.(ev.header, ev.key);
          break;
        case 'message':
          sink = await handler.onMessage(ev.meta);
          if (ev.meta.compression !== undefined) {
            try {
              await inflateInto(ev.meta, nextEvent, sink, resolved.maxInflateRatio);
            } catch (err) {
              // A payload that does not inflate as declared authenticated as sealed: the defect is the sender's own.
              if (err instanceof FerryError && !parser.failedWith(err) && header !== undefined && err.code.startsWith('EENVELOPE_')) markAuthentic(err, header);
              throw err;
            }
            await sink.end();
            sink = undefined;
          }
          break;
        case 'data':
          await (sink as PayloadSink).write(ev.bytes);
          break;
        case 'message-end':
          await (sink as PayloadSink).end();
          sink = undefined;
          break;
        case 'end':
          return ev.header;
      }
    }
  } catch (err) {
    parser.dispose();
    if (sink?.abort !== undefined) {
      try {
        await sink.abort(err);
      } catch {
        // the original failure matters more
      }
    }
    if (!inputDone && typeof it.return === 'function') {
      try {
        await it.return();
      } catch {
        // closing a failed input is best effort
      }
    }
    throw err;
  }
}

/** Feeds a compressed payload's bytes (the parser's `data` events up to `message-end`) through a bounded inflater into `sink`. */
async function inflateInto(meta: MessageMeta, nextEvent: () => Promise<ParseEvent>, sink: PayloadSink, maxRatio: number): Promise<void> {
  const kind = meta.compression as 'gzip' | 'br';
  const head: Uint8Array[] = [];
  let headBytes = 0;
  let ended = false;
  const pull = async (): Promise<Uint8Array | undefined> => {
    const ev = await nextEvent();
    if (ev.kind === 'data') return ev.bytes;
    if (ev.kind === 'message-end') return undefined;
    throw new FerryError('EENVELOPE_FORMAT', `the bundle has a ${ev.kind} event inside a payload.`); // the parser's states forbid it
  };

  if (meta.size <= SYNC_INFLATE_MAX_SIZE) {
    // Small: gather the compressed bytes and inflate in one call.
    while (headBytes <= SYNC_INFLATE_MAX_COMPRESSED) {
      const piece = await pull();
      if (piece === undefined) {
        ended = true;
        break;
      }
      head.push(piece);
      headBytes += piece.length;
    }
    if (ended) {
      const out = inflateSync(kind, concatBytes(head), meta.size);
      if (out.length > 0) await sink.write(out);
      return;
    }
  }
  async function* source(): AsyncGenerator<Uint8Array> {
    yield* head;
    head.length = 0;
    for (;;) {
      const piece = await pull();
      if (piece === undefined) return;
      yield piece;
    }
  }
  await inflateStream(kind, source(), meta.size, (piece) => sink.write(piece), maxRatio);
}
