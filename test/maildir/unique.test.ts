// Maildir names: unique, never reused, and ordered oldest first — ferry's own and the classic forms other programs write.

import { describe, expect, it } from 'vitest';
import { compareNames, uniqueName } from '../../src/maildir/unique.js';

describe('uniqueName', () => {
  it('never repeats a name across 100k calls and the names sort in creation order', () => {
    const made: string[] = [];
    for (let i = 0; i < 100_000; i++) made.push(uniqueName('alpha'));
    expect(new Set(made).size).toBe(made.length);
    const sorted = [...made].sort(compareNames);
    expect(sorted).toEqual(made);
  });

  it('makes names that are safe file names and carry the host last', () => {
    const name = uniqueName('host-1.example');
    expect(name).toMatch(/^\d+\.M\d{6}P\d+Q\d+R[0-9a-f]{8}\.host-1\.example$/);
    expect(name).not.toContain('/');
  });
});

describe('compareNames', () => {
  it.each([
    ['an earlier second before a later one', '1699999999.M999999P9.host', '1700000000.M0P1.host'],
    ['fewer microseconds first, whatever their digit count (M5 is 5 µs)', '1700000000.M5P4.host', '1700000000.M123P4.host'],
    ['M123 before M123456 in the same second', '1700000000.M123P4.host', '1700000000.M123456P4.host'],
    ['zero-padded and unpadded microseconds compare by value', '1700000000.M000042P4.host', '1700000000.M43P4.host'],
    ['a classic pid_seq name before a later second', '1700000000.12_3.host', '1700000001.M1P2.host'],
    ['a classic pid_seq name (no microseconds) before a name of the same second with microseconds', '1700000000.12_3.host', '1700000000.M123P4.host'],
    ['a classic pid name before a later classic name', '1700000000.99.host', '1700000001.1.host'],
    ['a longer second count (a later epoch) after a shorter one', '999999999.M1P1.host', '1000000000.M1P1.host'],
    ['names without a time after every timed name', '1700000000.M1P1.host', 'notime.host'],
    ['names without a time after a timed classic name', '1700000000.12_3.host', 'mail-from-script'],
    ['names without a time in name order among themselves', 'a-file', 'b-file'],
    ['the same time tie broken by the whole name', '1700000000.M5P1.a', '1700000000.M5P1.b'],
  ])('orders %s', (_what, older, newer) => {
    expect(compareNames(older, newer)).toBeLessThan(0);
    expect(compareNames(newer, older)).toBeGreaterThan(0);
    expect(compareNames(older, older)).toBe(0);
  });

  it('sorts a mixed directory listing oldest first', () => {
    const listing = ['zzz', '1700000001.M1P1.h', '1700000000.M900P1.h', '1700000000.12_3.h', '1700000000.M80P1.h', '1600000000.5.h'];
    expect([...listing].sort(compareNames)).toEqual([
      '1600000000.5.h', '1700000000.12_3.h', '1700000000.M80P1.h', '1700000000.M900P1.h', '1700000001.M1P1.h', 'zzz',
    ]);
  });
});
