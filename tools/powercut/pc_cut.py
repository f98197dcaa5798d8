# The power cut: kill every process using the mount, unmount it and its bind mounts, and rewrite the backing
# directory to what the model says a power cut leaves (strict) or to a seeded mixture it allows (reorder).
#
# Nothing here touches the mount itself from this process (a stat() of a file on it would wait for the very loop
# that is running this code): users are found through /proc/PID/fdinfo mount ids, cwd/root links and maps devices.
import errno
import os
import random
import re
import shutil
import signal

from pc_model import EMPTY
from pc_sys import copy_inode, link_fd, proc, umount, umount_lazy

INF = float('inf')
REPORT_LIMIT = 2000
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _unescape(s):
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), s)


def our_mounts(mount):
    """The device ('major:minor') of the FUSE mount at `mount` and [(mount id, mount point)] of it and its binds."""
    rows = []
    with open('/proc/self/mountinfo') as f:
        for line in f:
            p = line.split()
            rows.append((p[0], p[2], _unescape(p[4])))
    dev = None
    for _, d, mp in rows:
        if mp == mount:
            dev = d
    if dev is None:
        return None, []
    return dev, [(mid, mp) for mid, d, mp in rows if d == dev]


def _under(path, mps):
    return any(path == mp or path.startswith(mp.rstrip('/') + '/') for mp in mps)


def _why(pid, ids, mps, mapdev):
    """Why process `pid` uses the mount ('cwd', 'root', 'fd', 'mmap'), or None."""
    base = f'/proc/{pid}'
    for link in ('cwd', 'root'):
        try:
            if _under(os.readlink(f'{base}/{link}'), mps):
                return link
        except OSError:
            pass
    try:
        fds = os.listdir(f'{base}/fdinfo')
    except OSError:
        fds = []
    for fd in fds:
        try:
            with open(f'{base}/fdinfo/{fd}') as f:
                for line in f:
                    if line.startswith('mnt_id:'):
                        if line.split()[1] in ids:
                            return 'fd'
                        break
        except OSError:
            pass
    try:
        with open(f'{base}/maps') as f:
            for line in f:
                p = line.split(None, 5)
                if len(p) >= 5 and p[3] == mapdev and p[4] != '0':
                    return 'mmap'
    except OSError:
        pass
    return None


def users(dev, mounts):
    ids = {mid for mid, _ in mounts}
    mps = [mp for _, mp in mounts]
    major, minor = (int(x) for x in dev.split(':'))
    mapdev = f'{major:02x}:{minor:02x}'
    me, found = os.getpid(), {}
    for entry in os.listdir('/proc'):
        if entry.isdigit() and int(entry) != me:
            why = _why(int(entry), ids, mps, mapdev)
            if why:
                found[int(entry)] = why
    return found


def _describe(pid):
    info = {'comm': '?', 'uid': -1}
    try:
        with open(f'/proc/{pid}/comm') as f:
            info['comm'] = f.read().strip()
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('Uid:'):
                    info['uid'] = int(line.split()[1])
    except OSError:
        pass
    return info


async def kill_users(dev, mounts, sleep, spare=()):
    """SIGKILL every user of the mount but `spare`, scanning again until none is left (children forked meanwhile
    included). Returns (killed, spared) descriptions."""
    killed, spared = {}, {}
    for _ in range(250):
        found = users(dev, mounts)
        for pid in spare:
            if pid in found:
                spared[pid] = {'pid': pid, 'why': found.pop(pid), **_describe(pid)}
        if not found:
            break
        for pid, why in found.items():
            if pid not in killed:
                killed[pid] = {'pid': pid, 'why': why, **_describe(pid)}
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        await sleep(0.02)
    return sorted(killed.values(), key=lambda k: k['pid']), sorted(spared.values(), key=lambda k: k['pid'])


def unmount_all(mount, mounts, lazy=True):
    """Unmount the bind mounts (deepest first), then the mount; returns the bind mount points."""
    binds = sorted((mp for _, mp in mounts if mp != mount), key=len, reverse=True)
    for mp in binds + [mount]:
        try:
            (umount_lazy if lazy else umount)(mp)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOENT):   # not (or no longer) mounted: fine
                raise
    return binds


class Rebuild:
    """Compute the surviving tree from the model and swap it in place of the backing directory's contents."""

    def __init__(self, model, state_dir, mode, seed):
        self.m, self.state_dir, self.mode, self.seed = model, state_dir, mode, seed
        self.coins = {}
        self.placed_dirs, self.placed, self.placed_at = set(), {}, {}

    def keep(self, rid):
        """Reorder mode: did the change with record id `rid` reach the disk? Strict mode: never."""
        if self.mode != 'reorder' or not rid:
            return False
        c = self.coins.get(rid)
        if c is None:
            c = self.coins[rid] = random.Random(f'{self.seed}:{rid}').random() < 0.5
        return c

    def changes(self):
        """Every non-durable change, with the node it belongs to and the record deciding its fate."""
        out = []
        for n in list(self.m.nodes.values()):
            for name, before in sorted((n.orig or {}).items()):
                cur = self.m.current_key(n, name)
                if cur == (before.key if before is not None else None):
                    continue
                change = 'added' if before is None else 'removed' if cur is None else 'replaced'
                item = {'kind': 'entry', 'path': self.m.child_path(n, name), 'change': change}
                out.append((item, n, n.group[name], (name, self.m.keys.get(cur))))
            st = os.stat(n.fd)
            if n.dur_content is not None and (n.dur_content != EMPTY or st.st_size > 0):
                out.append(({'kind': 'content', 'path': self.m.path_of(n)}, n, n.rid, None))
            elif n.dur_meta is not None and self.m.meta_differs(n):
                out.append(({'kind': 'metadata', 'path': self.m.path_of(n)}, n, n.rid, None))
        return out

    def entries(self, d):
        """Durable entries of directory `d`: {name: (node, rank)}; rank orders competing parents of a directory."""
        cur = set() if d.removed else set(os.listdir(proc(d.fd).encode()))
        orig = d.orig or {}
        out = {}
        for name in sorted(cur | set(orig)):
            if name in orig and not self.keep(d.group[name]):
                t, rank = orig[name], d.rids[name]
            elif name in cur:
                t, rank = self.m.lookup_at(d, name)[0], INF
            else:
                t = None
            if t is not None:
                out[name] = (t, rank)
        return out

    def plan(self):
        """Breadth-first over the durable graph; a directory named by several durable entries (a cross-directory
        rename of a directory made durable on one side only) keeps the earliest-recorded one: it stays put."""
        root = self.m.root
        order, seen, cand, ents = [root], {root.ino}, {}, {}
        i = 0
        while i < len(order):
            d = order[i]
            i += 1
            ents[d.ino] = self.entries(d)
            for name, (t, rank) in ents[d.ino].items():
                if t.kind == 'dir' and t is not root:
                    cand.setdefault(t.ino, []).append((rank, d.ino, name))
                    if t.ino not in seen:
                        seen.add(t.ino)
                        order.append(t)
        return ents, {ino: min(c) for ino, c in cand.items()}

    def _meta(self, t, dirfd, name):
        if t.dur_meta is None or self.keep(t.rid):
            return
        mode, uid, gid, atime, mtime = t.dur_meta
        os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)
        if t.kind != 'symlink':
            os.chmod(name, mode, dir_fd=dirfd)
        if t.kind != 'dir':   # a rebuilt directory's times are new anyway
            os.utime(name, ns=(atime, mtime), dir_fd=dirfd, follow_symlinks=False)

    def _place(self, t, sfd, name):
        if t.ino in self.placed:
            pfd, pname = self.placed[t.ino]
            os.link(pname, name, src_dir_fd=pfd, dst_dir_fd=sfd, follow_symlinks=False)
            return
        durable = t.kind == 'file' and t.dur_content is not None and not self.keep(t.rid)
        if durable and t.dur_content == EMPTY:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=sfd))
        elif durable:
            os.link(t.dur_content, name, dst_dir_fd=sfd)
        else:
            try:
                link_fd(t.fd, sfd, name)
            except FileNotFoundError:   # its last name is gone: only our descriptor keeps it
                copy_inode(t.fd, sfd, name)
        self._meta(t, sfd, name)
        self.placed[t.ino] = (sfd, name)

    def build(self, stage):
        ents, winners = self.plan()
        fds = [os.open(stage, DIR_FLAGS)]
        stack = [(self.m.root, fds[0])]
        self.placed_dirs.add(1)
        while stack:
            d, sfd = stack.pop()
            for name, (t, _) in ents[d.ino].items():
                if t.kind != 'dir':
                    self._place(t, sfd, name)
                    continue
                w = winners.get(t.ino)
                if t.ino in self.placed_dirs or w is None or (w[1], w[2]) != (d.ino, name):
                    continue
                os.mkdir(name, 0o700, dir_fd=sfd)
                self.placed_dirs.add(t.ino)
                self.placed_at[t.ino] = (d.ino, name)
                cfd = os.open(name, DIR_FLAGS, dir_fd=sfd)
                fds.append(cfd)
                st = os.stat(t.fd)
                os.chown(cfd, st.st_uid, st.st_gid)
                os.chmod(cfd, st.st_mode & 0o7777)
                self._meta(t, sfd, name)
                stack.append((t, cfd))
        return fds

    def run(self):
        """Rewrite the backing directory; returns (kept, dropped) lists of changes."""
        changes = self.changes()
        stage = os.path.join(self.state_dir, 'cut-stage')
        trash = os.path.join(self.state_dir, 'cut-trash')
        for p in (stage, trash):
            shutil.rmtree(p, ignore_errors=True)
            os.mkdir(p, 0o700)
        fds = self.build(stage)
        bfd, tfd = os.open(self.m.backing, DIR_FLAGS), os.open(trash, DIR_FLAGS)
        try:
            for name in os.listdir(bfd):
                os.rename(name, name, src_dir_fd=bfd, dst_dir_fd=tfd)
            for name in os.listdir(fds[0]):
                os.rename(name, name, src_dir_fd=fds[0], dst_dir_fd=bfd)
            root = self.m.root
            if root.dur_meta is not None and not self.keep(root.rid):
                mode, uid, gid = root.dur_meta[:3]
                os.chown(bfd, uid, gid)
                os.chmod(bfd, mode)
        finally:
            for fd in fds + [bfd, tfd]:
                os.close(fd)
        for p in (trash, stage, self.m.shadow_dir):
            shutil.rmtree(p, ignore_errors=True)
        kept, dropped = [], []
        for item, n, rid, entry in changes:
            home = n.ino in (self.placed_dirs if item['kind'] == 'entry' or n.kind == 'dir' else self.placed)
            if entry is not None and entry[1] is not None and entry[1].kind == 'dir':
                home = home and self.placed_at.get(entry[1].ino) == (n.ino, entry[0])   # a moved directory went there
            (kept if home and self.keep(rid) else dropped).append(item)
        return kept, dropped


def rebuild(model, state_dir, mode, seed):
    kept, dropped = Rebuild(model, state_dir, mode, seed).run()
    return {'kept': kept[:REPORT_LIMIT], 'dropped': dropped[:REPORT_LIMIT],
            'keptCount': len(kept), 'droppedCount': len(dropped)}
