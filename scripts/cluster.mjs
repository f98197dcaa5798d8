#!/usr/bin/env node
// npm run cluster -- up --dir DIR [--hosts alpha,beta,gamma] | down --dir DIR
//
// `up` builds the confined deployment on this machine the README documents (src/devtools: a system user per host
// for its daemon, one chrooted SFTP-only login per ordered pair of hosts, made by the steps `ferry peer add --print`
// prints, one private loopback sshd), writes every host's config (routing every queue to every other host) and pair
// keys, starts the daemons as their own users, and writes DIR/cluster.json:
//   {"hosts": {"<name>": {"config", "root", "daemon_pid", "logins": {"<peer>": {"user", "host", "port", "identity",
//    "known_hosts", "remote_root"}}}}}   (hosts.alpha.logins.beta = how alpha logs in to beta)
// and DIR/deployment.json (what was made). `down`, from any later process, stops the daemons and removes exactly
// what deployment.json names: users, mounts, chroots, sshd, DIR. Needs root.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Cluster } from '../dist/devtools/cluster.js';
import { deploymentDown } from '../dist/devtools/deployment.js';

const [cmd, ...rest] = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 ? rest[i + 1] : dflt;
};
const usage = 'usage: npm run cluster -- up --dir DIR [--hosts alpha,beta,gamma] | down --dir DIR';
const dir = opt('dir');

if ((cmd !== 'up' && cmd !== 'down') || dir === undefined) {
  process.stderr.write(`ferry cluster: ${usage}\n`);
  process.exitCode = 2;
} else if (cmd === 'up') {
  const hosts = opt('hosts', 'alpha,beta,gamma').split(',').map((h) => h.trim()).filter((h) => h.length > 0);
  const abs = resolve(dir);
  const cluster = await Cluster.create({ hosts, dir: abs, daemonUsers: true, persistent: true });
  writeFileSync(join(abs, 'deployment.json'), `${JSON.stringify(cluster.deployment.record(), null, 2)}\n`, { mode: 0o644 });
  for (const h of hosts) await cluster.startDaemon(h, {}, true, true);
  writeFileSync(join(abs, 'cluster.json'), `${JSON.stringify(cluster.describe(), null, 2)}\n`, { mode: 0o644 });
  process.stdout.write(`cluster of ${hosts.join(', ')} up: sshd on 127.0.0.1:${cluster.deployment.port}, daemons running as their own users\n`);
  for (const h of cluster.hosts.values()) process.stdout.write(`  ${h.name}: pid ${h.daemon?.pid} config ${h.config} (run ferry as ${h.daemonUser?.name})\n`);
  process.stdout.write(`described in ${join(abs, 'cluster.json')}; tear down with: npm run cluster -- down --dir ${dir}\n`);
} else {
  const abs = resolve(dir);
  try {
    const desc = JSON.parse(readFileSync(join(abs, 'cluster.json'), 'utf8'));
    for (const h of Object.values(desc.hosts)) {
      if (h.daemon_pid) {
        try { process.kill(h.daemon_pid, 'SIGTERM'); } catch { /* gone already */ }
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
    for (const h of Object.values(desc.hosts)) {
      if (h.daemon_pid) {
        try { process.kill(h.daemon_pid, 'SIGKILL'); } catch { /* stopped */ }
      }
    }
  } catch {
    // no cluster.json: only a deployment was made
  }
  const rec = await deploymentDown(abs);
  process.stdout.write(`cluster ${rec.id} removed: ${rec.users.length} users, ${rec.mounts.length} mounts, ${rec.dir}\n`);
}
