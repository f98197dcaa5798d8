// `ferry daemon`, `doctor`, `flush`: replication commands (the daemon arrives with the replication work).
import type { Command } from 'commander';
import { FerryError } from '../errors.js';
import type { GlobalFlags } from './context.js';
import type { CliIO } from './io.js';

/** Registers the replication commands. */
export function registerDaemonCommands(program: Command, _io: CliIO, run: (p: Promise<number>) => void, _globals: (cmd: Command) => GlobalFlags): void {
  program.command('daemon')
    .description('ship outboxes to peers and deliver the landing area into inboxes (foreground)')
    .action(() => run(Promise.reject(new FerryError('EUSAGE', 'the daemon is not built yet'))));
}
