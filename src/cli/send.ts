// `ferry send QUEUE [FILE...]`: commit files (or stdin) as messages, several files as one transaction.
import { createReadStream, promises as fsp } from 'node:fs';
import { FerryError, errno } from '../errors.js';
import { parseHeaderArgs, validateQueueName } from '../spool/names.js';
import { configFrom, openSpool, type GlobalFlags } from './context.js';
import { out, type CliIO } from './io.js';

/** Flags of `ferry send`. */
export interface SendFlags extends GlobalFlags {
  header?: string[];
  to?: string[];
  /** Ask the consumer to reply into this queue on our host. */
  replyTo?: string;
  /** Mark the message as the reply to the request with this correlation id. */
  correlationId?: string;
}

/** Sends; prints one message id per line. */
export async function sendCommand(queue: string, files: string[], flags: SendFlags, io: CliIO): Promise<number> {
  validateQueueName(queue);
  const headers = parseHeaderArgs(flags.header ?? []);
  if (flags.replyTo !== undefined) headers['ferry.reply-to'] = validateQueueName(flags.replyTo);
  if (flags.correlationId !== undefined) {
    if (!/^[A-Za-z0-9._:-]{1,200}$/.test(flags.correlationId)) throw new FerryError('EHEADER', `--correlation-id ${JSON.stringify(flags.correlationId)} is invalid; expected the FERRY_CORRELATION_ID a request carried`);
    headers['ferry.correlation-id'] = flags.correlationId;
  }
  // Check every input before writing anything, so a typo in the third file commits nothing.
  for (const file of files) {
    if (file === '-') continue;
    let st;
    try {
      st = await fsp.stat(file);
    } catch (err) {
      const why = errno(err) === 'ENOENT' ? 'does not exist' : errno(err) === 'EACCES' ? 'is not readable' : `cannot be read (${errno(err) ?? String(err)})`;
      throw new FerryError('ENOENT_INPUT', `input file ${file} ${why}`, { path: file, cause: err });
    }
    if (!st.isFile()) throw new FerryError('ENOENT_INPUT', `input file ${file} is not a regular file`, { path: file });
    await fsp.access(file, fsp.constants.R_OK).catch((err: unknown) => {
      throw new FerryError('ENOENT_INPUT', `input file ${file} is not readable`, { path: file, cause: err });
    });
  }
  const config = await configFrom(flags);
  const to = flags.to ?? [];
  for (const dest of to) {
    if (dest !== config.host && !config.peers.has(dest)) {
      throw new FerryError('EPEER_NAME', `--to ${dest} names neither this host ("${config.host}") nor a configured peer`);
    }
  }
  const spool = await openSpool(config);
  const tx = spool.transaction();
  const inputs = files.length === 0 ? ['-'] : files;
  const bar = await progressBar(io, inputs);
  try {
    for (const file of inputs) {
      const payload = file === '-' ? io.stdin as AsyncIterable<Uint8Array> : counted(createReadStream(file), bar);
      await tx.send(queue, payload, { headers, to });
    }
    const ids = await tx.commit();
    bar?.update(bar.getTotal());
    bar?.stop();
    for (const id of ids) out(io, id);
    return 0;
  } catch (err) {
    bar?.stop();
    await tx.abort();
    throw err;
  }
}

/** Files at least this large in total get a progress bar (on a TTY only). */
const PROGRESS_MIN_BYTES = 16 * 1024 * 1024;

/** A progress bar on stderr when it is a TTY and the files are large; undefined in scripts. */
async function progressBar(io: CliIO, inputs: string[]): Promise<import('cli-progress').SingleBar | undefined> {
  if (io.stderr.isTTY !== true || inputs.includes('-')) return undefined;
  let total = 0;
  for (const f of inputs) total += (await fsp.stat(f)).size;
  if (total < PROGRESS_MIN_BYTES) return undefined;
  const { SingleBar, Presets } = await import('cli-progress');
  const bar = new SingleBar({ format: 'committing [{bar}] {percentage}% | {value}/{total} MiB | {eta_formatted} left', stream: io.stderr as NodeJS.WriteStream }, Presets.shades_classic);
  bar.start(Math.ceil(total / 2 ** 20), 0);
  return bar;
}

/** Passes chunks through, advancing the bar by the bytes read. */
async function* counted(source: AsyncIterable<Uint8Array>, bar: import('cli-progress').SingleBar | undefined): AsyncIterable<Uint8Array> {
  let bytes = 0;
  for await (const chunk of source) {
    bytes += chunk.byteLength;
    if (bar && bytes >= 2 ** 20) {
      bar.increment(Math.floor(bytes / 2 ** 20));
      bytes %= 2 ** 20;
    }
    yield chunk;
  }
}
