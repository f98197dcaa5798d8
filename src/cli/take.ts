// `ferry take QUEUE`: take oldest first inside a transaction; --exec CMD, --out DIR, or stdout.
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { FerryError, errno } from '../errors.js';
import type { TakenMessage } from '../inbox/taken-message.js';
import { createExclusive, fsyncDir, unlinkIfExists, writeAll } from '../maildir/fsx.js';
import { validateQueueName } from '../spool/names.js';
import { configFrom, openSpool, type GlobalFlags } from './context.js';
import { out, type CliIO } from './io.js';

/** Flags of `ferry take`. */
export interface TakeFlags extends GlobalFlags {
  wait?: string;
  max?: string;
  exec?: string;
  out?: string;
  lease?: string;
}

function positiveNumber(value: string | undefined, flag: string, fallback: number, integer = false): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) {
    throw new FerryError('EUSAGE', `${flag} expects a non-negative ${integer ? 'whole number' : 'number'}, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** Takes up to --max messages; exit 0 when every one taken was committed, 1 when one was aborted. */
export async function takeCommand(queue: string, flags: TakeFlags, io: CliIO): Promise<number> {
  validateQueueName(queue);
  if (flags.exec !== undefined && flags.out !== undefined) throw new FerryError('EUSAGE', '--exec and --out cannot be used together');
  const waitMs = positiveNumber(flags.wait, '--wait', 0) * 1000;
  const max = positiveNumber(flags.max, '--max', 1, true) || Number.POSITIVE_INFINITY;
  if (flags.out !== undefined) {
    const st = await fsp.stat(flags.out).catch(() => undefined);
    if (!st?.isDirectory()) throw new FerryError('EUSAGE', `--out ${flags.out} is not an existing directory`, { path: flags.out });
  }
  const config = await configFrom(flags);
  const spool = await openSpool(config);
  const leaseMs = flags.lease === undefined ? undefined : positiveNumber(flags.lease, '--lease', 0) * 1000;
  let failed = 0;
  for (let n = 0; n < max; n++) {
    const msg = await spool.take(queue, { waitMs: n === 0 ? waitMs : 0, leaseMs });
    if (!msg) break;
    if (flags.exec !== undefined) {
      const code = await runExec(flags.exec, msg, queue, leaseMs ?? config.leaseMs);
      if (code === 0) {
        await msg.commit();
      } else {
        failed += 1;
        await msg.abort(`command exited with ${code}`);
      }
    } else if (flags.out !== undefined) {
      let path: string;
      try {
        path = await writeOut(flags.out, msg);
      } catch (err) {
        await msg.abort(`writing into ${flags.out} failed: ${errno(err) ?? String(err)}`);
        throw err;
      }
      await msg.commit();
      out(io, path);
    } else {
      try {
        await pipeline(msg.stream(), io.stdout, { end: false });
      } catch (err) {
        await msg.abort(`writing to stdout failed: ${errno(err) ?? String(err)}`);
        throw err;
      }
      await msg.commit();
    }
  }
  return failed > 0 ? 1 : 0;
}

/** Copies the payload into DIR/<name> durably (tmp name, fsync, rename, directory fsync). */
async function writeOut(dir: string, msg: TakenMessage): Promise<string> {
  const final = join(dir, msg.name);
  const tmp = join(dir, `.${msg.name}.ferry-tmp`);
  // A run killed mid-copy leaves this name behind; it is ours to replace (unlink removes a symlink, not its target).
  await unlinkIfExists(tmp);
  const fh = await createExclusive(tmp);
  try {
    for await (const chunk of msg.stream()) await writeAll(fh, chunk as Buffer);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, final);
  await fsyncDir(dir);
  return final;
}

/** Runs CMD with the payload on stdin and the message described in the environment; resolves to its exit code. */
function runExec(command: string, msg: TakenMessage, queue: string, leaseMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], {
      stdio: ['pipe', 'inherit', 'inherit'],
      env: {
        ...process.env,
        FERRY_FILE: msg.path,
        FERRY_ID: msg.id,
        FERRY_ORIGIN: msg.origin,
        FERRY_QUEUE: queue,
        FERRY_HEADERS: JSON.stringify(msg.headers),
        // Request/response: reply with `ferry send "$FERRY_REPLY_TO" --to "$FERRY_ORIGIN" --correlation-id "$FERRY_CORRELATION_ID"`.
        FERRY_REPLY_TO: msg.headers['ferry.reply-to'] ?? '',
        FERRY_CORRELATION_ID: msg.headers['ferry.correlation-id'] ?? '',
        FERRY_ATTEMPT: String(msg.meta.attempts + 1),
      },
    });
    // Keep the lease alive while the command runs, however long it takes.
    const heartbeat = setInterval(() => { msg.extend(leaseMs).catch(() => undefined); }, Math.max(1000, leaseMs / 3));
    child.stdin.on('error', () => undefined); // the command need not read its stdin
    msg.stream().on('error', () => child.stdin.end()).pipe(child.stdin);
    child.on('error', (err) => {
      clearInterval(heartbeat);
      reject(new FerryError('EUSAGE', `could not run --exec command: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      clearInterval(heartbeat);
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}
