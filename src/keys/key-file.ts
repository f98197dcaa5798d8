// The text form of a pair key: a small TOML file, formatted and parsed here and nowhere else.

import { parse as parseToml, TomlDate, TomlError } from 'smol-toml';
import { z } from 'zod';
import { FerryError } from '../errors.js';
import { fingerprint, HOST_NAME_PATTERN, KEY_ID_PATTERN, makePairKey, SECRET_BYTES, type PairKey } from './pair-key.js';

/** Largest key file the loader will read; a real one is about 300 bytes. */
export const MAX_KEY_FILE_BYTES = 16 * 1024;

/** Exactly the base64 of 32 bytes: 43 characters and one `=` (the last one carrying 4 bits, hence the narrow class). */
const SECRET_BASE64 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

const FIELDS = ['id', 'peers', 'created', 'expires', 'secret'] as const;
type Field = (typeof FIELDS)[number];

/** What each field must be, for error messages. */
const EXPECTED: Record<Field, string> = {
  id: 'a key id of 1 to 64 letters, digits, `.`, `_` or `-`',
  peers: 'two different host names, each a letter or digit followed by up to 63 letters, digits, `.`, `_` or `-`',
  created: 'a date-time with a UTC offset, such as 2026-11-28T02:41:00Z',
  expires: 'a date-time with a UTC offset, such as 2027-11-28T02:41:00Z, later than `created`',
  secret: `the base64 of ${SECRET_BYTES} bytes`,
};

// A local date-time ("2026-11-28T02:41:00") means different instants on different hosts: refuse it.
const offsetDateTime = z
  .instanceof(TomlDate)
  .refine((d) => d.isValid() && d.isDateTime() && !d.isLocal());

const hostName = z.string().regex(HOST_NAME_PATTERN);

const keyFileSchema = z
  .strictObject({
    id: z.string().regex(KEY_ID_PATTERN),
    peers: z.tuple([hostName, hostName]).refine(([a, b]) => a !== b),
    created: offsetDateTime,
    expires: offsetDateTime.optional(),
    secret: z.string().regex(SECRET_BASE64),
  })
  .refine((k) => k.expires === undefined || k.expires.getTime() > k.created.getTime(), { path: ['expires'] });

/** The file name a key gets by default: `<id>.key`. Throws `EKEYFORMAT` for an id that would make a hidden file. */
export function keyFileName(key: Pick<PairKey, 'id'>): string {
  if (!KEY_ID_PATTERN.test(key.id) || key.id.startsWith('.')) {
    throw new FerryError('EKEYFORMAT', `key id ${JSON.stringify(key.id.slice(0, 80))} cannot name a key file; expected an id that does not start with \`.\` (the loader skips dotfiles).`);
  }
  return `${key.id}.key`;
}

/**
 * The text of a key file: a warning comment, the fingerprint (so two hosts can be compared
 * without showing the secret), then `id`, `peers` (sorted), `created`, optional `expires`, `secret`.
 * The result contains the secret: write it only with {@link writeKeyFile}.
 */
export function formatKeyFile(key: PairKey): string {
  const k = makePairKey(key); // validates and sorts peers
  const lines = [
    '# ferry pair key — secret: keep mode 0600, never commit or paste it',
    `# fingerprint ${fingerprint(k)}`,
    `id = ${JSON.stringify(k.id)}`,
    `peers = [${JSON.stringify(k.peers[0])}, ${JSON.stringify(k.peers[1])}]`,
    `created = ${tomlDateTime(k.created)}`,
    ...(k.expires === undefined ? [] : [`expires = ${tomlDateTime(k.expires)}`]),
    `secret = "${Buffer.from(k.secret.buffer, k.secret.byteOffset, k.secret.byteLength).toString('base64')}"`,
  ];
  return lines.join('\n') + '\n';
}

/**
 * Parse and strictly validate the text of a key file; `path` only names the file in errors
 * and is recorded on the key. Throws FerryError `EKEYFORMAT` naming the field at fault.
 * Error messages and causes never quote the file's text, which holds the secret.
 */
export function parseKeyFile(text: string, path?: string): PairKey {
  const where = path === undefined ? 'key file' : `key file ${path}`;
  let raw: Record<string, unknown>;
  try {
    raw = parseToml(text);
  } catch (err) {
    // No `cause`: smol-toml's message quotes the offending line, which may be the secret.
    const at = err instanceof TomlError ? ` (line ${err.line}, column ${err.column})` : '';
    throw new FerryError('EKEYFORMAT', `${where} is not valid TOML${at}.`, { path });
  }

  for (const field of ['id', 'peers', 'created', 'secret'] as const) {
    if (!(field in raw)) throw new FerryError('EKEYFORMAT', `${where} is missing \`${field}\`; expected ${EXPECTED[field]}.`, { path });
  }
  const result = keyFileSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    if (issue?.code === 'unrecognized_keys') {
      // Name the field, never its value: a misspelt `secret` would otherwise be printed.
      const names = issue.keys.map((k) => `\`${k.slice(0, 40)}\``).join(', ');
      throw new FerryError('EKEYFORMAT', `${where} has unknown field ${names}; expected only ${FIELDS.join(', ')}.`, { path });
    }
    const field = (FIELDS as readonly unknown[]).includes(issue?.path[0]) ? (issue?.path[0] as Field) : undefined;
    if (field === undefined) throw new FerryError('EKEYFORMAT', `${where} is not a valid key file.`, { path });
    throw new FerryError('EKEYFORMAT', `${where} has a bad \`${field}\`: expected ${EXPECTED[field]}${got(field, raw[field])}.`, { path });
  }

  const { id, peers, created, expires, secret } = result.data;
  const bytes = Buffer.from(secret, 'base64');
  try {
    return makePairKey({
      id,
      peers: [peers[0], peers[1]],
      created: new Date(created.getTime()),
      expires: expires === undefined ? undefined : new Date(expires.getTime()),
      secret: bytes,
      path,
    });
  } finally {
    // makePairKey copied it; wipe this one, which may sit in Node's shared Buffer pool.
    bytes.fill(0);
  }
}

/** ` got …` for fields whose value is safe to show in an error, else nothing. */
function got(field: Field, value: unknown): string {
  if (field === 'secret' || value === undefined) return '';
  if (field === 'created' || field === 'expires') {
    return value instanceof TomlDate ? `, got ${value.toISOString()}` : `, got a ${typeof value}`;
  }
  const shown = JSON.stringify(value) ?? typeof value;
  return `, got ${shown.length > 100 ? shown.slice(0, 100) + '…' : shown}`;
}

/** RFC 3339 in UTC, with milliseconds only when there are some: `2026-11-28T02:41:00Z`. */
function tomlDateTime(d: Date): string {
  return d.toISOString().replace('.000Z', 'Z');
}
