// The wall clock, as every time-deciding code path reads it, with a test-only offset for clock jumps.
//
// Production never sets FERRY_CLOCK_FILE, and `now` is then Date.now itself. The chaos harness and
// the clock-jump tests point it at a file holding an offset in ms (`7200000`, `-7200000`, `0`);
// the file is re-read at most every CLOCK_POLL_MS, so a running process jumps when the file
// changes. Only wall-clock readings move: timers, performance.now() and the file system's own
// timestamps (mtime/ctime written by the kernel) do not, as CLOCK_MONOTONIC does not in a real jump.
import { readFileSync } from 'node:fs';

/** How often a process looks at its clock file again, ms. */
export const CLOCK_POLL_MS = 100;

/** A source of wall-clock time, ms since the epoch. */
export type Clock = () => number;

/**
 * A clock that reads its offset (ms, a decimal integer, surrounding white space ignored) from
 * `file`, at most every `pollMs`. A missing or unreadable file, or one that does not hold an
 * integer, means offset 0. Without `file`, Date.now.
 */
export function fileClock(file: string | undefined, pollMs = CLOCK_POLL_MS): Clock {
  if (file === undefined || file === '') return Date.now;
  let offset = 0;
  let checkedAt = Number.NEGATIVE_INFINITY;
  return () => {
    // Polled on the monotonic clock: the offset must not decide when it is read again.
    const t = performance.now();
    if (t - checkedAt >= pollMs) {
      checkedAt = t;
      offset = readOffset(file);
    }
    return Date.now() + offset;
  };
}

function readOffset(file: string): number {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch {
    return 0;
  }
  return /^[+-]?\d{1,15}$/.test(text) ? Number(text) : 0;
}

/** ms since the epoch: Date.now(), plus the test offset named by FERRY_CLOCK_FILE when set. */
export const now: Clock = fileClock(process.env.FERRY_CLOCK_FILE);
