// The receiver's own limits: what it accepts from any peer, whatever a bundle declares, and the disk room it keeps.
import { statfsSync } from 'node:fs';
import { FerryError } from '../errors.js';
import type { Limits } from '../envelope/index.js';

/** Receiver limits (`[receive]` in the config). Every field has a default. */
export interface ReceiveLimits {
  /** Largest landing file read, bytes. Default 64 GiB. */
  maxBundleBytes: number;
  /** Most messages in one bundle. Default 100 000. */
  maxBundleMessages: number;
  /** Largest payload one message may declare (inflated), bytes. Default 64 GiB. */
  maxMessageBytes: number;
  /** Largest sum of declared payload sizes in one bundle (inflated), bytes. Default 64 GiB. */
  maxBundleInflatedBytes: number;
  /** Largest inflate ratio of a compressed payload past its first MiB. Default 1 000. */
  maxInflateRatio: number;
  /**
   * Free space delivery never eats into, bytes: a message that would leave less waits (the channel shows EDISK_FULL)
   * until consumers free room. Keeps local producers and consumers working whatever a peer sends. Default (undefined):
   * 64 MiB, or 2 % of the file system when that is less (a small disk still takes deliveries).
   */
  reserveBytes: number | undefined;
}

/** The defaults of {@link ReceiveLimits}. */
export const DEFAULT_RECEIVE_LIMITS: Readonly<ReceiveLimits> = Object.freeze({
  maxBundleBytes: 64 * 2 ** 30,
  maxBundleMessages: 100_000,
  maxMessageBytes: 64 * 2 ** 30,
  maxBundleInflatedBytes: 64 * 2 ** 30,
  maxInflateRatio: 1_000,
  reserveBytes: undefined,
});

/** The reserve when none is configured: 64 MiB, or 2 % of the file system when that is less. */
const AUTO_RESERVE = 64 * 2 ** 20;

/** The envelope reader's limits for these receiver limits. */
export function readerLimits(l: ReceiveLimits): Partial<Limits> {
  return { maxMessages: l.maxBundleMessages, maxMessageBytes: l.maxMessageBytes, maxBundleBytes: l.maxBundleBytes, maxTotalBytes: l.maxBundleInflatedBytes, maxInflateRatio: l.maxInflateRatio };
}

/** Bytes one message costs on disk beyond its payload (a partly filled block, its directory entries and metadata). */
const PER_MESSAGE_OVERHEAD = 8 * 1024;

/**
 * Free space on the inbox's file system, handed out message by message: `take(size)` throws a recoverable
 * `EDISK_FULL` when writing `size` more bytes would leave less than the reserve. statfs is asked again only when
 * what is left would not do, so small messages cost one call per bundle.
 */
export class DiskBudget {
  private left: number;
  private readonly reserve: number;

  constructor(private readonly path: string, reserve: number | undefined) {
    const s = statfsSync(path);
    this.reserve = reserve ?? Math.min(AUTO_RESERVE, Math.floor(s.blocks * s.bsize * 0.02));
    this.left = s.bavail * s.bsize - this.reserve;
  }

  private measure(): number {
    const s = statfsSync(this.path);
    return s.bavail * s.bsize - this.reserve;
  }

  /** Reserves room for a message of `size` payload bytes, or throws EDISK_FULL. */
  take(size: number): void {
    const need = size + PER_MESSAGE_OVERHEAD;
    if (need > this.left) this.left = this.measure();
    if (need > this.left) {
      throw new FerryError('EDISK_FULL', `delivering a message of ${size} bytes would leave less than the ${this.reserve}-byte reserve free on the file system of ${this.path}; waiting for consumers to free room`, { path: this.path });
    }
    this.left -= need;
  }
}
