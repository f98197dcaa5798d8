// The file names of the shipping protocol: sealed bundles, gap records, uploads in progress, receipts — the one place that knows them.
//
// `<epoch:16>-<firstSeq:12>-<count>-<channel>.fb` for a bundle, `.gap` instead of `.fb` for a gap record. The
// zero padding makes names sort in delivery order (epoch number, then first sequence), the same in a channel's
// out/ directory and in the peer's landing directory. A name is only a hint, for ordering and logs: the receiver
// trusts what is sealed inside, and a name that lies only delays its own sender's channel.

/** What a bundle's name says. */
export interface BundleNameParts {
  /** Channel epoch number. */
  epoch: number;
  /** Channel epoch id (16 hex digits). */
  channel: string;
  firstSeq: number;
  count: number;
  /** A gap record rather than messages. */
  gap: boolean;
}

const NAME_RE = /^(\d{16})-(\d{12,16})-(\d{1,9})-([0-9a-f]{16})\.(fb|gap)$/;

/** Suffix of a bundle being uploaded into a landing directory (`<name>.part`), renamed away once complete. */
export const PART_SUFFIX = '.part';
/** The receiver's receipt in each landing directory (sealed, for that peer). */
export const RECEIPT_NAME = 'ferry.receipt';

/** Formats a bundle (or gap record) name. */
export function formatBundleName(p: BundleNameParts): string {
  return `${String(p.epoch).padStart(16, '0')}-${String(p.firstSeq).padStart(12, '0')}-${p.count}-${p.channel}.${p.gap ? 'gap' : 'fb'}`;
}

/** Parses a bundle or gap record name, or undefined when it is not one. */
export function parseBundleName(name: string): BundleNameParts | undefined {
  const m = NAME_RE.exec(name);
  if (!m) return undefined;
  return { epoch: Number(m[1]), firstSeq: Number(m[2]), count: Number(m[3]), channel: m[4] as string, gap: m[5] === 'gap' };
}

/** Orders names by epoch number, then first sequence (gap records and bundles of one position side by side). */
export function compareBundleNames(a: BundleNameParts, b: BundleNameParts): number {
  return a.epoch - b.epoch || a.firstSeq - b.firstSeq || a.count - b.count || (a.channel < b.channel ? -1 : a.channel > b.channel ? 1 : 0) || Number(a.gap) - Number(b.gap);
}

/** The last sequence a name covers. */
export function lastSeq(p: BundleNameParts): number {
  return p.firstSeq + p.count - 1;
}
