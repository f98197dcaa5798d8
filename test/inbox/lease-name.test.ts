// Lease names: what a taken message is called in lease/, so any process can tell who holds it and for which transaction.

import { describe, expect, it } from 'vitest';
import { CLAIM_GRACE_MS, formatLease, leaseExpiry, newLease, parseLease, type LeaseName } from '../../src/inbox/lease-name.js';

describe('lease names', () => {
  it.each<[string, LeaseName]>([
    ['a plain lease', { name: '1700000000.M5P1Q1Rab.alpha', pid: 42 }],
    ['a lease with a token', { name: '1700000000.M5P1Q1Rab.alpha', pid: 42, token: '0badf00d' }],
    ['a committing lease', { name: '1700000000.M5P1Q1Rab.alpha', pid: 42, token: 'beef', txid: '1700000001.M1P2Q3R4.alpha' }],
    ['a committing lease without a token (older layout)', { name: 'legacy-name', pid: 7, txid: 'tx.1' }],
  ])('parses back %s', (_what, lease) => {
    expect(parseLease(formatLease(lease))).toEqual(lease);
  });

  it.each([['no-pid-here'], ['name~Pabc'], ['~P12'], ['name~P12~T'], ['name~P12~Tbad/txid']])('rejects %j', (text) => {
    expect(parseLease(text)).toBeUndefined();
  });

  it('gives two takes of the same message different lease names, even in one process', () => {
    const a = formatLease(newLease('1700000000.M5P1.alpha'));
    const b = formatLease(newLease('1700000000.M5P1.alpha'));
    expect(a).not.toBe(b);
    expect(parseLease(a)?.name).toBe('1700000000.M5P1.alpha');
    expect(parseLease(a)?.pid).toBe(process.pid);
  });
});

describe('leaseExpiry', () => {
  it.each([
    ['a stamped lease expires at its mtime', { mtimeMs: 5_000, ctimeMs: 1_000 }, 5_000],
    ['a lease stamped with an expiry already passed expires at its mtime', { mtimeMs: 1_500, ctimeMs: 1_000 }, 1_500],
    ['an unstamped lease (old write time) gets the claim grace period', { mtimeMs: 500, ctimeMs: 1_000 }, 1_000 + CLAIM_GRACE_MS],
    ['an unstamped lease written in the same clock tick it was claimed gets the grace period', { mtimeMs: 1_000, ctimeMs: 1_000 }, 1_000 + CLAIM_GRACE_MS],
    ['an unstamped lease written a fraction of a millisecond before its claim gets the grace period', { mtimeMs: 999.6, ctimeMs: 1_000 }, 1_000 + CLAIM_GRACE_MS],
  ])('%s', (_what, st, expected) => {
    expect(leaseExpiry(st)).toBe(expected);
  });
});
