// Every error code ferry can raise is documented in the README's table, and recoverable/fatal is explicit.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, FerryError } from '../src/errors.js';

describe('error codes', () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const table = readme.slice(readme.indexOf('## Error codes'), readme.indexOf('## Operations'));

  it.each(Object.keys(ERROR_CODES))('documents %s in the README error table', (code) => {
    // Rows may group codes: "EENVELOPE_MAGIC / _VERSION / _FORMAT" documents EENVELOPE_VERSION too.
    const suffix = code.slice(code.lastIndexOf('_'));
    const grouped = new RegExp(`${code.slice(0, code.indexOf('_') > 0 ? code.indexOf('_') : code.length)}[A-Z_]* (/ [A-Z_]+ )*/ ${suffix}\\b`);
    expect(table.includes(`| ${code} |`) || table.includes(` ${code} `) || grouped.test(table)).toBe(true);
  });

  it('tells recoverable errors from fatal ones', () => {
    expect(new FerryError('ETRANSPORT', 'x').recoverable).toBe(true);
    expect(new FerryError('EENVELOPE_MAC', 'x').recoverable).toBe(false);
  });

  it('keeps cause, path and peer like Node errors do', () => {
    const cause = new Error('inner');
    const err = new FerryError('EKEYPERM', 'key file /k has mode 0644', { path: '/k', peer: 'beta', cause });
    expect(err).toMatchObject({ code: 'EKEYPERM', path: '/k', peer: 'beta', cause, name: 'FerryError' });
  });
});
