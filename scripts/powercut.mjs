#!/usr/bin/env node
// npm run powercut -- <command> --mount M [options]: drive the power-cut simulator (tools/powercut) from a shell.
//
//   mount   --backing B --mount M [--state S] [--mode strict|reorder] [--seed N] [--cut-after N]
//           mounts in the background, returns once mounted, prints the status line
//   cut     --mount M     kill the mount's users, unmount, rewrite B to what a power cut leaves; prints the report
//   sync    --mount M     make everything durable (FUSE never sees sync(2)/syncfs(2))
//   status  --mount M     counters: operations, durable and pending changes
//   log     --mount M [--from N]   the mutating operations since mount, one JSON line each
//   unmount --mount M     clean shutdown keeping everything
// A reboot after a cut is `mount` again with the same --backing and --mount. Exit status 2 for bad input, 1 otherwise.
import { connectPowercut, mountPowercut } from '../dist/devtools/powercut.js';

const COMMANDS = ['mount', 'cut', 'sync', 'status', 'log', 'unmount'];
const VALUED = ['backing', 'mount', 'state', 'mode', 'seed', 'cut-after', 'from'];

class UsageError extends Error {}

function parse(argv) {
  const [command, ...rest] = argv;
  if (command === undefined || !COMMANDS.includes(command)) {
    throw new UsageError(`expected a command (${COMMANDS.join(', ')}), got \`${command ?? ''}\`: run \`npm run powercut -- mount --backing B --mount M\``);
  }
  const opts = {};
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    if (name === undefined || !VALUED.includes(name)) throw new UsageError(`unknown option \`${arg}\` for powercut ${command}: the options are ${VALUED.map((v) => `--${v}`).join(', ')}`);
    const value = rest[i + 1];
    if (value === undefined || value.startsWith('--')) throw new UsageError(`option --${name} needs a value: e.g. \`--${name} ${name === 'mode' ? 'reorder' : name === 'seed' || name === 'cut-after' || name === 'from' ? '3' : '/path'}\``);
    opts[name] = value;
    i++;
  }
  if (opts.mount === undefined) throw new UsageError(`powercut ${command} needs --mount M (the simulator's mount point)`);
  if (command === 'mount' && opts.backing === undefined) throw new UsageError('powercut mount needs --backing B (the directory to show and to rewrite at a cut)');
  return { command, opts };
}

function integer(name, value) {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`expected --${name} to be a non-negative integer, got \`${value}\``);
  return Number(value);
}

async function run({ command, opts }) {
  const print = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
  if (command === 'mount') {
    const pc = await mountPowercut({
      backing: opts.backing,
      mount: opts.mount,
      stateDir: opts.state,
      mode: opts.mode,
      seed: integer('seed', opts.seed),
      cutAfter: integer('cut-after', opts['cut-after']),
    });
    print(await pc.status());
    return;
  }
  const pc = connectPowercut(opts.mount);
  if (command === 'cut') print(await pc.cut());
  else if (command === 'sync') {
    await pc.sync();
    print(await pc.status());
  } else if (command === 'status') print(await pc.status());
  else if (command === 'log') for (const op of await pc.log(integer('from', opts.from) ?? 0)) print(op);
  else if (command === 'unmount') await pc.unmount();
}

try {
  await run(parse(process.argv.slice(2)));
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = err instanceof UsageError || err?.code === 'EUSAGE' ? 2 : 1;
}
