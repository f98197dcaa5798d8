#!/usr/bin/env node
// npm run cluster -- up --dir DIR [--hosts alpha,beta,gamma] | down --dir DIR
//
// `up` builds the confined deployment on this machine (src/devtools/deployment.ts: daemon users, one chrooted
// SFTP-only login per ordered pair of hosts, one private loopback sshd left running) and writes DIR/deployment.json;
// `down`, from any later process, tears down exactly what that file names. Needs root. This script only parses
// arguments: what `up` builds (configs, keys, daemons next) lives behind deploymentUp().
import { resolve } from 'node:path';
import { deploymentDown, deploymentUp } from '../dist/devtools/deployment.js';

const [cmd, ...rest] = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : dflt;
};
const usage = 'usage: npm run cluster -- up --dir DIR [--hosts alpha,beta,gamma] | down --dir DIR';
const dir = opt('dir');

if ((cmd !== 'up' && cmd !== 'down') || dir === undefined) {
  process.stderr.write(`${usage}\n`);
  process.exitCode = 2;
} else if (cmd === 'up') {
  const hosts = opt('hosts', 'alpha,beta,gamma').split(',').map((h) => h.trim()).filter((h) => h.length > 0);
  const d = await deploymentUp({ dir: resolve(dir), hosts });
  process.stdout.write(`deployment ${d.id}: sshd on 127.0.0.1:${d.port}, hosts ${hosts.join(', ')}; described in ${resolve(dir, 'deployment.json')}\n`);
  for (const l of d.record().logins) process.stdout.write(`  ${l.sender} -> ${l.receiver}: ${l.user}@127.0.0.1:${l.port} remote_root ${l.remoteRoot}\n`);
  process.stdout.write(`tear down with: npm run cluster -- down --dir ${dir}\n`);
} else {
  const rec = await deploymentDown(resolve(dir));
  process.stdout.write(`deployment ${rec.id} removed: ${rec.users.length} users, ${rec.mounts.length} mounts, ${rec.dir}\n`);
}
