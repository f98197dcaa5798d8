// How the CLI talks to the terminal: one place for stdout/stderr so commands stay testable.

/** Where a command writes. Tests pass their own. */
export interface CliIO {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
}

let epipeHandled = false;

/**
 * `ferry status | head`: once the reader is gone, stop quietly with status 0, as `ls | head` does, rather than
 * die on an unhandled EPIPE with a stack trace. Any other stdout error is still thrown.
 */
function exitQuietlyOnEpipe(): void {
  if (epipeHandled) return;
  epipeHandled = true;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(0);
  });
}

/** The process's own streams (stdout ends the process quietly when its reader goes away). */
export function processIO(): CliIO {
  exitQuietlyOnEpipe();
  // stdin is a getter: touching process.stdin opens a handle that can hold the process open, so only `send` does.
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    get stdin() { return process.stdin; },
  };
}

/** Writes a line to stdout. */
export function out(io: CliIO, line: string): void {
  io.stdout.write(`${line}\n`);
}
