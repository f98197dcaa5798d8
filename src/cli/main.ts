// The `ferry` command line: commander parses, commands run, errors become one sentence and an exit code.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { isFerryError } from '../errors.js';
import type { GlobalFlags } from './context.js';
import { processIO, type CliIO } from './io.js';

// Commands load their modules on use: `ferry send` must not pay for ssh2, chokidar or libsodium.
const lazy = {
  init: () => import('./init.js'),
  send: () => import('./send.js'),
  take: () => import('./take.js'),
  status: () => import('./status.js'),
  keys: () => import('./keys.js'),
  daemon: () => import('./daemon.js'),
  doctor: () => import('./doctor.js'),
  flush: () => import('./flush.js'),
  request: () => import('./request.js'),
  peer: () => import('./peer.js'),
  receive: () => import('./receive.js'),
};

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** This package's version (dist/cli/main.js → package.json two levels up). */
function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Builds the commander program; `run` receives each command's promise of an exit code. */
export function buildProgram(io: CliIO, run: (p: Promise<number>) => void): Command {
  const program = new Command('ferry')
    .description('Move messages between the hosts of a cluster through the filesystem and SSH.')
    .option('--config <file>', 'config file (default: $FERRY_CONFIG, else /etc/ferry/ferry.toml)')
    .option('--root <dir>', 'spool root (overrides the config)')
    .option('--keys <dir>', 'key directory (overrides the config)')
    .option('--debug', 'print stack traces with errors')
    .version(packageVersion(), '-V, --version', 'print the version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .exitOverride();
  const globals = (cmd: Command): GlobalFlags => cmd.optsWithGlobals() as GlobalFlags;

  program.command('init')
    .description('create the spool layout (mode 0700) and a starter config; run it as the daemon\'s user (sudo -u ferry ferry init …)')
    .option('--host <name>', "this host's name (default: the config's, else the machine's)")
    .addHelpText('after', '\nExample:\n  ferry init --host alpha --root /var/spool/ferry')
    .action((_opts, cmd: Command) => run(lazy.init().then((m) => m.initCommand(globals(cmd), io))));

  program.command('send')
    .description('commit FILEs (or stdin) as messages to QUEUE; several FILEs are one transaction; prints the ids')
    .argument('<queue>', 'queue name')
    .argument('[files...]', 'files to send (none, or "-": stdin)')
    .option('--header <k=v>', 'header kept with each message (repeatable)', collect)
    .option('--to <peer>', 'ship to this peer instead of the route (repeatable)', collect)
    .option('--reply-to <queue>', 'ask the consumer to reply into this queue on this host (request/response)')
    .option('--correlation-id <id>', 'mark this message as the reply to a request (FERRY_CORRELATION_ID)')
    .addHelpText('after', '\nExamples:\n  ferry send orders order-1.json order-2.json --header kind=order\n  echo hello | ferry send greetings\n  ferry send "$FERRY_REPLY_TO" --to "$FERRY_ORIGIN" --correlation-id "$FERRY_CORRELATION_ID" answer.json')
    .action((queue: string, files: string[], _opts, cmd: Command) => run(lazy.send().then((m) => m.sendCommand(queue, files, globals(cmd), io))));

  program.command('take')
    .description('take messages oldest first, transactionally: --exec CMD, --out DIR, or the payload to stdout')
    .argument('<queue>', 'queue name')
    .option('--wait <seconds>', 'wait this long for a message when the queue is empty', '0')
    .option('--max <n>', 'take at most n messages (0: all there are)', '1')
    .option('--lease <seconds>', 'how long a message stays invisible to others before it returns (default: the config\'s lease)')
    .addOption(new Option('--exec <cmd>', 'run CMD per message (payload on stdin; FERRY_FILE, FERRY_ID, FERRY_ORIGIN, FERRY_QUEUE, FERRY_HEADERS (JSON), FERRY_ATTEMPT, FERRY_REPLY_TO, FERRY_CORRELATION_ID in env); exit 0 commits, non-zero aborts').conflicts('out'))
    .option('--out <dir>', 'write each payload into DIR, then commit; prints the paths')
    .addHelpText('after', '\nExamples:\n  ferry take orders --exec ./handle.sh --max 0\n  ferry take orders --wait 30 > order.json')
    .action((queue: string, _opts, cmd: Command) => run(lazy.take().then((m) => m.takeCommand(queue, globals(cmd), io))));

  program.command('status')
    .description('queue depths: outbox, inbox, in flight, dead letters')
    .option('--json', 'one JSON document (with --watch: one per refresh)')
    .option('--watch [seconds]', 'refresh every few seconds (default 2) until interrupted; adds per-peer rates')
    .action((_opts, cmd: Command) => run(lazy.status().then((m) => m.statusCommand(globals(cmd), io))));

  const keys = program.command('keys').description('pair keys: generate and list');
  keys.command('generate')
    .description('write a new 32-byte key for a pair of hosts (mode 0600)')
    .requiredOption('--peers <a,b>', 'the two hosts the key binds')
    .option('--out <file>', 'where to write it (default: <keys dir>/<id>.key)')
    .option('--expires <days>', 'expire the key after this many days')
    .addHelpText('after', '\nExample:\n  ferry keys generate --peers alpha,beta --out /etc/ferry/keys/alpha-beta.key')
    .action((_opts, cmd: Command) => run(lazy.keys().then((m) => m.keysGenerateCommand(globals(cmd), io))));
  keys.command('list')
    .description('ids, peers, age and fingerprints of the keys — never the secret')
    .option('--json', 'one JSON document')
    .action((_opts, cmd: Command) => run(lazy.keys().then((m) => m.keysListCommand(globals(cmd), io))));

  program.command('daemon')
    .description('ship outboxes to peers and deliver the landing area into inboxes (foreground; logs JSON lines)')
    .addHelpText('after', '\nSignals: SIGTERM/SIGINT drain and stop; SIGHUP reloads the config and keys.\nExample:\n  ferry daemon --config /etc/ferry/ferry.toml')
    .action((_opts, cmd: Command) => run(lazy.daemon().then((m) => m.daemonCommand(globals(cmd), io))));

  program.command('request')
    .description('send FILE (or stdin) to QUEUE with a reply queue and a correlation id, then print the reply')
    .argument('<queue>', 'queue name')
    .argument('[file]', 'the request payload (none, or "-": stdin)')
    .option('--wait <seconds>', 'how long to wait for the reply (default 30)')
    .option('--reply-queue <queue>', 'where replies come back on this host (default reply.<host>)')
    .option('--header <k=v>', 'header kept with the request (repeatable)', collect)
    .option('--to <peer>', 'ship to this peer instead of the route (repeatable)', collect)
    .addHelpText('after', '\nThe responder replies with:\n  ferry take QUEUE --exec \'handle | ferry send "$FERRY_REPLY_TO" --to "$FERRY_ORIGIN" --correlation-id "$FERRY_CORRELATION_ID"\'\nExample:\n  ferry request prices query.json --wait 10')
    .action((queue: string, file: string | undefined, _opts, cmd: Command) => run(lazy.request().then((m) => m.requestCommand(queue, file, globals(cmd), io))));

  program.command('doctor')
    .description('check config, spool, keys, peers (reachability, pinned host keys, landing area), disk and clock; prints a fix for each failure')
    .option('--json', 'one JSON document')
    .addHelpText('after', '\nExit status 1 when a check failed.\nExample:\n  ferry doctor --config /etc/ferry/ferry.toml')
    .action((_opts, cmd: Command) => run(lazy.doctor().then((m) => m.doctorCommand(globals(cmd), io))));

  program.command('flush')
    .description('wait until every committed message is durable at every peer it is routed to (progress bar on a TTY)')
    .option('--timeout <seconds>', 'give up after this long (exit 1)')
    .addHelpText('after', '\nExample:\n  ferry send reports big.tar && ferry flush --timeout 600')
    .action((_opts, cmd: Command) => run(lazy.flush().then((m) => m.flushCommand(globals(cmd), io))));

  const peer = program.command('peer').description('sending peers of this (receiving) host');
  peer.command('add')
    .description("print the root shell steps that give PEER its own chrooted, SFTP-only login here, and the sender's [peers.*] table")
    .argument('<peer>', 'the sending host')
    .option('--print', 'print the steps (required: ferry changes nothing itself)')
    .option('--login <name>', "the peer's login (default ferry-in-<peer>)")
    .option('--daemon-user <name>', "the daemon's user (default ferry)")
    .option('--chroot-base <dir>', 'parent of the per-peer chroots (default /srv/ferry)')
    .option('--public-key <file>', "the sender's public key (its /etc/ferry/ssh/id_ed25519.pub)")
    .option('--quota <bytes>', 'a disk quota for the login (K, M, G, T suffixes; needs user quotas on the spool filesystem)')
    .option('--ssh-port <n>', "this host's sshd port, for the sender's table (default 22)")
    .option('--receiver-host <name>', "the address the sender connects to (default: this host's name)")
    .addHelpText('after', '\nExample:\n  ferry peer add alpha --print --public-key alpha-id_ed25519.pub --receiver-host beta.example > add-alpha.sh')
    .action((name: string, _opts, cmd: Command) => run(lazy.peer().then((m) => m.peerAddCommand(name, globals(cmd), io))));

  const receive = program.command('receive').description('the receiving side: channels from peers');
  receive.command('resync')
    .description("clear the alarm that stops PEER's channel (EDEDUPE_ROLLBACK: take PEER's proven mark as delivered)")
    .argument('<peer>', 'the sending host')
    .addHelpText('after', "\nRun it only after checking what the inbox holds: messages between this host's old mark and the peer's are taken as delivered.\nExample:\n  ferry receive resync alpha")
    .action((name: string, _opts, cmd: Command) => run(lazy.receive().then((m) => m.receiveResyncCommand(name, globals(cmd), io))));
  return program;
}

/** Runs the CLI on `argv` (process.argv form) and resolves to the exit code. Never calls process.exit. */
export async function main(argv: string[], io: CliIO = processIO()): Promise<number> {
  let pending: Promise<number> | undefined;
  const program = buildProgram(io, (p) => { pending = p; });
  const debug = argv.includes('--debug');
  try {
    await program.parseAsync(argv);
    return pending === undefined ? 0 : await pending;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2;
    }
    if (isFerryError(err)) {
      io.stderr.write(`ferry: ${err.message}\n`);
      if (debug && err.stack) io.stderr.write(`${err.stack}\n`);
      return 1;
    }
    const e = err as NodeJS.ErrnoException;
    const where = e.path ? ` (${e.path})` : '';
    io.stderr.write(`ferry: ${e.message ?? String(err)}${where}\n`);
    if (debug && e.stack) io.stderr.write(`${e.stack}\n`);
    return 1;
  }
}
