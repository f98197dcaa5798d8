// Request/response on ordinary queues: `ferry request` sends with a reply queue and a correlation id,
// then waits in its own inbox for the reply carrying that id.
import { createReadStream, promises as fsp } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { FerryError, errno } from '../errors.js';
import { uniqueName } from '../maildir/unique.js';
import { parseHeaderArgs, validateQueueName } from '../spool/names.js';
import { configFrom, openSpool, type GlobalFlags } from './context.js';
import type { CliIO } from './io.js';

/** Header naming the queue a reply should go to (on the requester's host: reply with `--to $FERRY_ORIGIN`). */
export const REPLY_TO = 'ferry.reply-to';
/** Header tying a reply to its request. */
export const CORRELATION_ID = 'ferry.correlation-id';

/** Flags of `ferry request`. */
export interface RequestFlags extends GlobalFlags {
  wait?: string;
  replyQueue?: string;
  header?: string[];
  to?: string[];
}

/** Sends FILE (or stdin) to QUEUE and prints the correlated reply's payload; ETIMEOUT when none comes in time. */
export async function requestCommand(queue: string, file: string | undefined, flags: RequestFlags, io: CliIO): Promise<number> {
  validateQueueName(queue);
  const waitS = flags.wait === undefined ? 30 : Number(flags.wait);
  if (!(waitS >= 0)) throw new FerryError('EUSAGE', `--wait expects a number of seconds, got ${JSON.stringify(flags.wait)}`);
  const headers = parseHeaderArgs(flags.header ?? []);
  if (file !== undefined && file !== '-') {
    const st = await fsp.stat(file).catch((err: unknown) => {
      throw new FerryError('ENOENT_INPUT', `input file ${file} ${errno(err) === 'ENOENT' ? 'does not exist' : 'cannot be read'}`, { path: file, cause: err });
    });
    if (!st.isFile()) throw new FerryError('ENOENT_INPUT', `input file ${file} is not a regular file`, { path: file });
  }
  const config = await configFrom(flags);
  const replyQueue = validateQueueName(flags.replyQueue ?? `reply.${config.host}`);
  const spool = await openSpool(config);
  const correlation = uniqueName(config.host);
  const payload = file === undefined || file === '-' ? (io.stdin as AsyncIterable<Uint8Array>) : createReadStream(file);
  await spool.send(queue, payload, { headers: { ...headers, [REPLY_TO]: replyQueue, [CORRELATION_ID]: correlation }, to: flags.to ?? [] });
  const reply = await spool.take(replyQueue, { waitMs: waitS * 1000, match: (meta) => meta.headers[CORRELATION_ID] === correlation });
  if (!reply) {
    throw new FerryError('ETIMEOUT', `no reply with correlation id ${correlation} arrived in queue ${replyQueue} within ${waitS} s (the request was sent)`, { queue: replyQueue });
  }
  await pipeline(reply.stream(), io.stdout, { end: false });
  await reply.commit();
  return 0;
}
