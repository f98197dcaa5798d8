// Where everything lives under the spool root. The one place that knows the on-disk layout.
import { join } from 'node:path';
import { validateHostName, validateQueueName } from './names.js';

/**
 * Paths of a spool rooted at `root`:
 *
 * ```
 * outbox/<q>/{tmp,new}                      producers commit messages here (maildir)
 * inbox/<q>/{tmp,new,cur}                   delivered payloads (maildir); cur/ is for maildir readers
 * inbox/<q>/lease/                          messages taken by an open take transaction
 * inbox/<q>/meta/<name>.json                metadata of a delivered message (origin, id, headers…)
 * inbox/<q>/dead/                           messages that failed too often, with meta/ reasons
 * drop/<q>/                                 naive drops by legacy scripts
 * landing/<peer>/                           what <peer> uploads: its own directory, reached only by its own login
 * state/commits/{tmp,new}                   send transactions: written in tmp/, committed by rename into new/
 * state/name-floor                          the host-wide floor under order-deciding names (maildir/name-floor.ts)
 * state/channels/<peer>/                    per-peer transmission queue (sealed bundles, sequence state)
 * state/receive/                            dedupe state and delivery journals, apart from the inbox
 * state/quarantine/                         envelopes that failed verification, with reasons
 * state/dead/                               messages that could not be shipped within their lifetime
 * ```
 */
export class SpoolLayout {
  constructor(readonly root: string) {}

  get outbox(): string { return join(this.root, 'outbox'); }
  get inbox(): string { return join(this.root, 'inbox'); }
  get drop(): string { return join(this.root, 'drop'); }
  get state(): string { return join(this.root, 'state'); }
  get landing(): string { return join(this.root, 'landing'); }
  get commits(): string { return join(this.state, 'commits'); }
  get commitsTmp(): string { return join(this.state, 'commits', 'tmp'); }
  get commitsNew(): string { return join(this.state, 'commits', 'new'); }
  get nameFloor(): string { return join(this.state, 'name-floor'); }
  get channels(): string { return join(this.state, 'channels'); }
  get receive(): string { return join(this.state, 'receive'); }
  get quarantine(): string { return join(this.state, 'quarantine'); }
  get deadOut(): string { return join(this.state, 'dead'); }

  /** The directories `ferry init` creates (queue directories come and go with use). */
  get fixedDirs(): string[] {
    return [
      this.root, this.outbox, this.inbox, this.drop, this.state, this.landing,
      this.commits, this.commitsTmp, this.commitsNew, this.channels, this.receive, this.quarantine, this.deadOut,
    ];
  }

  outboxQueue(queue: string): string { return join(this.outbox, validateQueueName(queue)); }
  outboxTmp(queue: string): string { return join(this.outboxQueue(queue), 'tmp'); }
  outboxNew(queue: string): string { return join(this.outboxQueue(queue), 'new'); }

  inboxQueue(queue: string): string { return join(this.inbox, validateQueueName(queue)); }
  inboxDir(queue: string, sub: InboxSubdir): string { return join(this.inboxQueue(queue), sub); }
  dropQueue(queue: string): string { return join(this.drop, validateQueueName(queue)); }
  channel(peer: string): string { return join(this.channels, peer); }
  /** The landing directory of `peer` (checked to be a host name). */
  landingOf(peer: string): string { return join(this.landing, validateHostName(peer, 'peer name')); }
}

/** The subdirectories of one inbox queue. */
export type InboxSubdir = 'tmp' | 'new' | 'cur' | 'lease' | 'meta' | 'dead';
export const INBOX_SUBDIRS: readonly InboxSubdir[] = ['tmp', 'new', 'cur', 'lease', 'meta', 'dead'];
