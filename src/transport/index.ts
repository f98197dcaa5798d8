// The transport area's public API: how bundle files reach the landing directory a peer gave this host (SFTP, or the local filesystem).

/** The interface every transport implements, and the shapes it uses. */
export type { LandingEntry, ProgressFn, PublishResult, Transport } from './transport.js';
/** SSH/SFTP transport to one peer: pinned host key, resumable windowed upload, fsync + hardlink publish. */
export { SftpTransport } from './sftp-transport.js';
export type { ResumePolicy, SftpProbe, SftpTransportOptions, SftpTransportStats } from './sftp-transport.js';
/** Local-filesystem transport with the same publish semantics (self-routes, fast tests). */
export { LocalTransport } from './local-transport.js';
export type { LocalTransportOptions } from './local-transport.js';
/** The landing file names transports accept, and the check that enforces it. */
export { BUNDLE_NAME_RE, assertBundleName } from './bundle-name.js';
/** known_hosts parsing, host-key pinning and `ssh-keygen -lf` style fingerprints (also for `ferry doctor`). */
export {
  checkHostKey,
  fingerprintSha256,
  hostKeyAlgorithms,
  hostMatches,
  keyTypeOf,
  knownHostsName,
  parseKnownHosts,
  pinnedKeys,
  readKnownHosts,
} from './known-hosts.js';
export type { HostKeyVerdict, KnownHostEntry, KnownHosts, KnownHostsProblem, PinnedKeys } from './known-hosts.js';
/** SFTP extensions a peer must offer. */
export { REQUIRED_SFTP_EXTENSIONS } from './sftp-session.js';
/** The pino-compatible logger surface transports accept. */
export type { TransportLogger } from './logger.js';
