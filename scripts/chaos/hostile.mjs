// The hostile peer of `npm run chaos -- --hostile`: one host that, beside its honest daemon, attacks every receiver through its real login.
//
// Each action goes through the host's own chrooted SFTP login on a receiver (what a compromised host can do), or uses
// the host's own pair keys (which a compromised host holds). None of them may make any receiver lose, duplicate,
// reorder or forge an honest message — the hostile host's own honest messages included — or stop it serving others.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { formatBundleName, writeSealedBundle } from '../../dist/envelope/index.js';
import { loadKeyDir } from '../../dist/keys/index.js';

const cb = (fn) => new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));

/** An SFTP session as `login` (cluster.deployment.login(receiver, host)), reconnected when it drops. */
class Session {
  constructor(login) { this.login = login; this.sftp = undefined; this.client = undefined; }
  async get() {
    if (this.sftp) return this.sftp;
    const l = this.login;
    const pinned = readFileSync(l.knownHosts, 'utf8').split('\n')[0].split(/\s+/)[2];
    const client = new ssh2.Client();
    this.sftp = await new Promise((resolve, reject) => {
      client.once('error', reject);
      client.once('ready', () => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
      client.connect({ host: l.host, port: l.port, username: l.user, privateKey: readFileSync(l.identity), readyTimeout: 10_000, hostVerifier: (k) => k.toString('base64') === pinned });
    });
    client.on('close', () => { this.sftp = undefined; });
    client.on('error', () => { this.sftp = undefined; });
    this.client = client;
    return this.sftp;
  }
  async put(path, bytes) {
    const s = await this.get();
    const h = await cb((d) => s.open(path, 'w', { mode: 0o640 }, d));
    for (let at = 0; at < bytes.length; at += 255 * 1024) {
      const n = Math.min(255 * 1024, bytes.length - at);
      await cb((d) => s.write(h, bytes, at, n, at, d));
    }
    await cb((d) => s.close(h, d));
  }
  end() { this.client?.end(); this.sftp = undefined; }
}

/** The hostile host `self` against every other host, through its logins; `rand` is the harness's seeded PRNG. */
export class HostilePeer {
  constructor(cluster, self, rand) {
    this.cluster = cluster;
    this.self = self;
    this.rand = rand;
    this.sessions = new Map();
    this.captured = []; // bundles this host's honest daemon shipped, kept to replay later
    this.counts = {};
    this.isolationBroken = [];
  }
  pick(xs) { return xs[Math.floor(this.rand() * xs.length)]; }
  session(receiver) {
    let s = this.sessions.get(receiver);
    if (!s) { s = new Session(this.cluster.deployment.login(receiver, this.self)); this.sessions.set(receiver, s); }
    return s;
  }
  /** A name shaped like one of this host's bundles to `receiver`: its channel's epoch and the next few sequences. */
  nextName(receiver, ahead = 0) {
    try {
      const st = JSON.parse(readFileSync(join(this.cluster.host(this.self).root, 'state', 'channels', receiver, 'state.json'), 'utf8'));
      return formatBundleName({ epoch: st.epoch, channel: st.channel, firstSeq: st.nextSeq + ahead, count: 1, gap: false });
    } catch {
      return formatBundleName({ epoch: 1, channel: 'c0ffee00c0ffee00', firstSeq: 1 + ahead, count: 1, gap: false });
    }
  }
  async landing(receiver) {
    const s = await this.session(receiver).get();
    return (await cb((d) => s.readdir('/landing', d))).map((e) => e.filename).filter((n) => n !== 'ferry.receipt');
  }
  capture() {
    // What the honest daemon of this host sealed and may ship: copies to replay after they were delivered.
    for (const receiver of this.cluster.hosts.keys()) {
      if (receiver === this.self) continue;
      const out = join(this.cluster.host(this.self).root, 'state', 'channels', receiver, 'out');
      try {
        for (const n of readdirSync(out)) if (this.captured.length < 50 && n.endsWith('.fb')) this.captured.push({ receiver, name: n, bytes: readFileSync(join(out, n)) });
      } catch { /* none */ }
    }
  }
  async seal(receiver, claim) {
    const { keys } = await loadKeyDir(this.cluster.host(this.self).keys);
    const real = keys.find((k) => k.peers.includes(this.self) && k.peers.includes(receiver));
    if (!real) return undefined;
    // Lie about the pair the key binds: the secret is this host's genuine one with the receiver.
    const key = { id: real.id, secret: real.secret, peers: [claim, receiver] };
    const chunks = [];
    const payload = Buffer.from(JSON.stringify({ id: `${claim}-forged-${Math.floor(this.rand() * 1e9)}` }));
    await writeSealedBundle({ write: async (c) => { chunks.push(Buffer.from(c)); } }, key,
      { origin: claim, destination: receiver, channel: 'f0f0f0f0f0f0f0f0', epoch: 9_000_000_000_000, firstSeq: 1, count: 1, created: Date.now(), acked: 0 },
      [{ meta: { seq: 1, queue: `from-${claim}`, id: `forged-${Math.floor(this.rand() * 1e9)}`, headers: {}, committed: Date.now(), size: payload.length }, payload: async function* () { yield payload; } }]);
    return Buffer.concat(chunks);
  }

  /** One random attack on one random receiver. Never throws: a refused action is the receiver (or the OS) winning. */
  async act() {
    const receivers = [...this.cluster.hosts.keys()].filter((h) => h !== this.self);
    const receiver = this.pick(receivers);
    const kinds = ['delete-own', 'hide-own', 'corrupt-own', 'truncate-own', 'chmod-own', 'precreate', 'symlink', 'hardlink', 'dir', 'junk', 'big-upload', 'forge-origin', 'forge-receiver', 'replay', 'fake-receipt', 'other-dir'];
    const kind = this.pick(kinds);
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
    this.capture();
    const sess = this.session(receiver);
    try {
      const s = await sess.get();
      const own = async () => this.pick((await this.landing(receiver)).filter((n) => n.endsWith('.fb') || n.endsWith('.gap')));
      switch (kind) {
        case 'delete-own': { const n = await own(); if (n) await cb((d) => s.unlink(`/landing/${n}`, d)); break; }
        case 'hide-own': { const n = await own(); if (n) await cb((d) => s.rename(`/landing/${n}`, `/landing/.h-${n}`, d)); break; }
        case 'corrupt-own': {
          const n = await own();
          if (n) { const h = await cb((d) => s.open(`/landing/${n}`, 'r+', d)); await cb((d) => s.write(h, Buffer.from([Math.floor(this.rand() * 256)]), 0, 1, 40 + Math.floor(this.rand() * 200), d)); await cb((d) => s.close(h, d)); }
          break;
        }
        case 'truncate-own': { const n = await own(); if (n) await cb((d) => s.setstat(`/landing/${n}`, { size: 20 }, d)); break; }
        case 'chmod-own': { const n = await own(); if (n) await cb((d) => s.chmod(`/landing/${n}`, 0, d)); break; }
        case 'precreate': for (let i = 0; i < 3; i++) await sess.put(`/landing/${this.nextName(receiver, i)}`, Buffer.from('junk under a name this host will use')); break;
        case 'symlink': await cb((d) => s.symlink(this.pick(['/etc/passwd', '..', '/landing', '/proc/self/environ']), `/landing/${this.nextName(receiver, 7)}`, d)); break;
        case 'hardlink': { const n = await own(); if (n) await cb((d) => s.ext_openssh_hardlink(`/landing/${n}`, `/landing/${this.nextName(receiver, 9)}`, d)); break; }
        case 'dir': await cb((d) => s.mkdir(`/landing/d${Math.floor(this.rand() * 1e6)}`, d)); break;
        case 'junk': await sess.put(`/landing/${this.pick(['.dot', 'readme.txt', 'x.fb', '0-0-0-0.fb'])}${Math.floor(this.rand() * 1e6)}`, Buffer.from('junk')); break;
        case 'big-upload': await sess.put(`/landing/${this.nextName(receiver, 20)}.part`, Buffer.alloc(40 * 1024 * 1024, 5)); break;
        case 'forge-origin': {
          const claim = this.pick(receivers.filter((h) => h !== receiver).concat([receiver]));
          const b = await this.seal(receiver, claim);
          if (b) await sess.put(`/landing/${formatBundleName({ epoch: 9_000_000_000_000, channel: 'f0f0f0f0f0f0f0f0', firstSeq: 1, count: 1, gap: false })}`, b);
          break;
        }
        case 'forge-receiver': {
          const b = await this.seal(receiver, receiver); // "from the receiver itself"
          if (b) await sess.put(`/landing/${formatBundleName({ epoch: 9_000_000_000_001, channel: 'f0f0f0f0f0f0f0f1', firstSeq: 1, count: 1, gap: false })}`, b);
          break;
        }
        case 'replay': {
          const c = this.pick(this.captured.filter((x) => x.receiver === receiver));
          if (c) await (await this.session(c.receiver)).put(`/landing/${c.name}`, c.bytes);
          break;
        }
        case 'fake-receipt': await sess.put('/landing/ferry.receipt', Buffer.from('not a receipt')); break;
        case 'other-dir': {
          // Another peer's directory on the same receiver: the chroot (and the OS) must refuse every path.
          const other = this.pick([...this.cluster.hosts.keys()].filter((h) => h !== this.self && h !== receiver)) ?? receiver;
          for (const p of [`/landing/../${other}/x`, `/../${other}/x`, `${this.cluster.host(receiver).root}/landing/${other}/x`, '/etc/passwd']) {
            try {
              await sess.put(p, Buffer.from('x'));
              this.isolationBroken.push(`wrote ${p} on ${receiver}`);
            } catch { /* refused, as it must be */ }
          }
          break;
        }
      }
    } catch {
      // refused or raced by the receiver: that is the point
    }
  }
  end() { for (const s of this.sessions.values()) s.end(); }
}
