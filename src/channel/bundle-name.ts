// The file name of a sealed bundle: `<firstSeq:12>-<count>-<epoch>-<origin>.fb`, the same locally and on the peer.
//
// The name is only a hint (for ordering and logs): the receiver trusts what is sealed inside.

const NAME_RE = /^(\d{12,16})-(\d{1,9})-([0-9a-f]{16})-([A-Za-z0-9][A-Za-z0-9._-]{0,63})\.fb$/;

/** What a bundle's name says. */
export interface BundleNameParts {
  firstSeq: number;
  count: number;
  epoch: string;
  origin: string;
}

/** Formats a bundle name. */
export function formatBundleName(p: BundleNameParts): string {
  return `${String(p.firstSeq).padStart(12, '0')}-${p.count}-${p.epoch}-${p.origin}.fb`;
}

/** Parses a bundle name, or undefined when it is not one. */
export function parseBundleName(name: string): BundleNameParts | undefined {
  const m = NAME_RE.exec(name);
  if (!m) return undefined;
  return { firstSeq: Number(m[1]), count: Number(m[2]), epoch: m[3] as string, origin: m[4] as string };
}
