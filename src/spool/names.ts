// Validation of the names users and peers give us: queues, hosts, headers. One sentence per refusal.
import { FerryError } from '../errors.js';

const QUEUE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const HOST_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const HEADER_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Most headers one message may carry. */
export const MAX_HEADERS = 64;
/** Longest header value, in UTF-8 bytes. */
export const MAX_HEADER_VALUE = 4096;

function shown(value: string): string {
  return value.length > 80 ? `${JSON.stringify(value.slice(0, 80))}…` : JSON.stringify(value);
}

/** True when `name` is a valid queue name: `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`. */
export function isQueueName(name: string): boolean {
  return QUEUE_RE.test(name);
}

/** Throws `EQUEUE_NAME` unless `name` is a valid queue name. */
export function validateQueueName(name: string): string {
  if (typeof name !== 'string' || !QUEUE_RE.test(name)) {
    throw new FerryError(
      'EQUEUE_NAME',
      `queue name ${shown(String(name))} is invalid; expected 1 to 128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`,
      { queue: String(name) },
    );
  }
  return name;
}

/** True when `name` is a valid host name for ferry: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`. */
export function isHostName(name: string): boolean {
  return HOST_RE.test(name);
}

/** Throws `EHOST_NAME` unless `name` is a valid host name. */
export function validateHostName(name: string, what = 'host name'): string {
  if (typeof name !== 'string' || !HOST_RE.test(name)) {
    throw new FerryError(
      'EHOST_NAME',
      `${what} ${shown(String(name))} is invalid; expected 1 to 64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}

/** Throws `EHEADER` unless `headers` is a small map of safe keys to bounded string values. */
export function validateHeaders(headers: Record<string, string>): Record<string, string> {
  const entries = Object.entries(headers);
  if (entries.length > MAX_HEADERS) {
    throw new FerryError('EHEADER', `a message may carry at most ${MAX_HEADERS} headers, got ${entries.length}`);
  }
  for (const [key, value] of entries) {
    if (!HEADER_KEY_RE.test(key)) {
      throw new FerryError('EHEADER', `header name ${shown(key)} is invalid; expected letters, digits, '.', '_' or '-', starting with a letter or digit`);
    }
    if (typeof value !== 'string' || Buffer.byteLength(value) > MAX_HEADER_VALUE) {
      throw new FerryError('EHEADER', `header ${key} must be a string of at most ${MAX_HEADER_VALUE} bytes`);
    }
  }
  return headers;
}

/** Parses `k=v` strings (as given to `--header`) into a header map, throwing `EHEADER` on a malformed one. */
export function parseHeaderArgs(args: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new FerryError('EHEADER', `header ${shown(arg)} is malformed; expected key=value`);
    headers[arg.slice(0, eq)] = arg.slice(eq + 1);
  }
  return validateHeaders(headers);
}
