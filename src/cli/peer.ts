// `ferry peer add PEER --print`: print the root shell steps that give a sending peer its own chrooted, SFTP-only login on this host.
import { readFile } from 'node:fs/promises';
import { peerRecipe, renderRecipe, senderSnippet, type PeerRecipeOptions } from '../deploy/peer-recipe.js';
import { FerryError } from '../errors.js';
import { configFrom, type GlobalFlags } from './context.js';
import type { CliIO } from './io.js';

/** Flags of `ferry peer add` (commander's camelCase of the options). */
export interface PeerAddFlags extends GlobalFlags {
  print?: boolean;
  login?: string;
  daemonUser?: string;
  chrootBase?: string;
  publicKey?: string;
  quota?: string;
  sshPort?: string;
  receiverHost?: string;
}

const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** `1048576`, `512M`, `10G` → bytes. */
function parseBytes(text: string): number {
  const m = /^(\d+)([KMGT]?)i?B?$/i.exec(text.trim());
  const n = m ? Number(m[1]) * (UNITS[(m[2] ?? '').toUpperCase()] ?? NaN) : NaN;
  if (!Number.isSafeInteger(n)) throw new FerryError('EUSAGE', `--quota expects a size in bytes (or with K, M, G, T), got ${JSON.stringify(text)}`);
  return n;
}

/** The first key line of a public key file (comments and blank lines skipped). */
async function readPublicKey(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new FerryError('ENOENT_INPUT', `cannot read the public key file ${file}: ${(err as Error).message}`, { path: file, cause: err });
  }
  const line = text.split('\n').map((l) => l.trim()).find((l) => l.length > 0 && !l.startsWith('#'));
  if (line === undefined) throw new FerryError('EUSAGE', `the public key file ${file} holds no key line`, { path: file });
  return line;
}

/** Prints the recipe for `peer` (a commented sh script) and, as comments, the sender's `[peers.*]` table. Changes nothing. */
export async function peerAddCommand(peer: string, flags: PeerAddFlags, io: CliIO): Promise<number> {
  if (!flags.print) {
    throw new FerryError('EUSAGE', 'ferry peer add only prints the steps (pass --print), for you to review and run as root on this host');
  }
  const config = await configFrom(flags);
  if (peer === config.host) throw new FerryError('EUSAGE', `peer ${peer} is this host; name the sending host`);
  let sshPort: number | undefined;
  if (flags.sshPort !== undefined) {
    sshPort = Number(flags.sshPort);
    if (!/^\d+$/.test(flags.sshPort)) throw new FerryError('EUSAGE', `--ssh-port expects a port number, got ${JSON.stringify(flags.sshPort)}`);
  }
  const opts: PeerRecipeOptions = {
    peer,
    spoolRoot: config.root,
    receiver: config.host,
    ...(flags.login === undefined ? {} : { login: flags.login }),
    ...(flags.daemonUser === undefined ? {} : { daemonUser: flags.daemonUser }),
    ...(flags.chrootBase === undefined ? {} : { chrootBase: flags.chrootBase }),
    ...(flags.publicKey === undefined ? {} : { publicKey: await readPublicKey(flags.publicKey) }),
    ...(flags.quota === undefined ? {} : { quotaBytes: parseBytes(flags.quota) }),
    ...(sshPort === undefined ? {} : { sshPort }),
    ...(flags.receiverHost === undefined ? {} : { receiverHost: flags.receiverHost }),
  };
  const script = renderRecipe(peerRecipe(opts));
  const snippet = senderSnippet(opts).trimEnd().split('\n').map((l) => `#   ${l}`);
  io.stdout.write(`${script}\n# On ${peer} (the sender), in its ferry.toml:\n${snippet.join('\n')}\n`);
  return 0;
}
