// The chaos checker's reading of one host's consumer log (both consumers of the host append to it).
//
// Lines, one write each (O_APPEND, fsynced), so the file's order is the order the writes happened in:
//   open <queue> <leaseFile>              written BEFORE the consumer opens the payload (leaseFile: the lease's
//                                         file name, unique per take, so it pairs with the take line below)
//   take <queue> <id> <name> <leaseFile>  written after the payload was read (the id is in the payload)
//   commit <queue> <id>                   written after the commit (the unlink of the lease) succeeded
//   abort <queue> <id> | lost <queue> <id>
//
// "Taken after commit" means a consumer opened a message's payload after another take of it had committed.
// The take line cannot decide that: it is written after the read, so a consumer that opened the payload
// while it still held the lease, then lost the lease (another consumer whose clock ran ahead returned and
// took the message, and committed it), logs its take after that commit. That read came first, and its own
// commit is refused (ELEASE_LOST): nothing is wrong. So a take counts from its `open` line. That is sound:
// a commit line is written after the commit's unlink, an open line before the open, so a commit line above
// an open line means the open came after the unlink, and an open that then succeeds read a committed message.
// (The converse is not guaranteed: a committer stalled between its unlink and its log line hides a late
// read from this check, as any log-order check must.) Logs from before `open` lines existed fall back to the
// take line's position, the old and stricter reading.
/**
 * @param {string} text
 * @returns {{ commits: Map<string, number>, takes: Map<string, number>, afterCommit: Set<string> }}
 */
export function consumerHistory(text) {
  const commits = new Map();
  const takes = new Map();
  const afterCommit = new Set();
  const opened = new Map(); // leaseFile → index of its open line
  const firstCommit = new Map(); // id → index of its first commit line
  const lines = text.split('\n');
  for (const [i, line] of lines.entries()) {
    const [verb, , a, , leaseFile] = line.split(' ');
    if (!a) continue;
    if (verb === 'open') {
      if (!opened.has(a)) opened.set(a, i);
    } else if (verb === 'take') {
      const readAt = leaseFile !== undefined && opened.has(leaseFile) ? opened.get(leaseFile) : i;
      const committedAt = firstCommit.get(a);
      if (committedAt !== undefined && committedAt < readAt) afterCommit.add(a);
      takes.set(a, (takes.get(a) ?? 0) + 1);
    } else if (verb === 'commit') {
      commits.set(a, (commits.get(a) ?? 0) + 1);
      if (!firstCommit.has(a)) firstCommit.set(a, i);
    }
  }
  return { commits, takes, afterCommit };
}
