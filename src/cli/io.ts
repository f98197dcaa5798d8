// How the CLI talks to the terminal: one place for stdout/stderr so commands stay testable.

/** Where a command writes. Tests pass their own. */
export interface CliIO {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
}

/** The process's own streams. */
export function processIO(): CliIO {
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
