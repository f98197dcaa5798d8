# The FUSE pass-through (pyfuse3, low-level, inode based): every request is done on the backing directory at once
# and reported to the model; fsync/fdatasync/fsyncdir are *not* forwarded, they only move the model's durable point.
#
# Handlers never await: each request runs to completion on the event loop before the next starts, so the model
# never sees a half-done operation and --cut-after stops exactly after the Nth one.
import errno
import functools
import os
import stat

import pyfuse3
from pyfuse3 import FUSEError

from pc_sys import RENAME_EXCHANGE, chown_fd, link_fd, proc, renameat2

TIMEOUT = 1.0
STRIP_OPEN = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_NOFOLLOW | getattr(os, 'O_DIRECT', 0)
SYNC_FLAGS = os.O_SYNC | os.O_DSYNC


def request(fn):
    """Turn OSError into the errno FUSE replies with; refuse everything with EIO once the power is being cut."""
    @functools.wraps(fn)
    async def wrapper(self, *args):
        if self.m.cutting:
            raise FUSEError(errno.EIO)
        try:
            return fn(self, *args)
        except OSError as e:
            raise FUSEError(e.errno or errno.EIO) from None
    return wrapper


class Handle:
    __slots__ = ('node', 'fd', 'sync')

    def __init__(self, node, fd, sync):
        self.node, self.fd, self.sync = node, fd, sync


class DirHandle:
    __slots__ = ('node', 'names')

    def __init__(self, node):
        self.node, self.names = node, None


class PowercutFS(pyfuse3.Operations):
    enable_writeback_cache = False   # write-through: every write reaches us before write(2) returns

    def __init__(self, model):
        super().__init__()
        self.m = model
        self.files = {}
        self.dirs = {}
        self.next_dh = 1

    # -- helpers -----------------------------------------------------------------------------------------------

    def _attr(self, n, st):
        a = pyfuse3.EntryAttributes()
        a.st_ino = n.ino
        a.generation = 0
        a.entry_timeout = TIMEOUT
        a.attr_timeout = TIMEOUT
        a.st_mode, a.st_nlink, a.st_uid, a.st_gid = st.st_mode, st.st_nlink, st.st_uid, st.st_gid
        a.st_rdev, a.st_size, a.st_blksize, a.st_blocks = st.st_rdev, st.st_size, st.st_blksize, st.st_blocks
        a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        return a

    def _entry(self, n, st):
        n.lookups += 1
        return self._attr(n, st)

    def _owner(self, parent, ctx):
        """Who a new inode belongs to: the caller, with the directory's group under a set-group-ID directory."""
        gid = -1 if os.stat(parent.fd).st_mode & stat.S_ISGID else ctx.gid
        return ctx.uid, gid

    def _created(self, parent, name, ctx, kind):
        """Register what a create-like request just made: owner, model records, log; returns its entry attributes."""
        uid, gid = self._owner(parent, ctx)
        if uid != 0 or gid not in (-1, 0):
            os.chown(name, uid, gid, dir_fd=parent.fd, follow_symlinks=False)
        n, st = self.m.lookup_at(parent, name)
        if n.kind == 'file':
            self.m.new_file(n, st)
        self.m.entry_changed(parent, name, None)
        self.m.op(kind, self.m.child_path(parent, name))
        return n, st

    def _victim(self, parent, name):
        return self.m.lookup_at(parent, name)[0]

    # -- names -------------------------------------------------------------------------------------------------

    @request
    def lookup(self, parent_inode, name, ctx=None):
        p = self.m.node(parent_inode)
        if name == b'.':
            return self._entry(p, os.stat(p.fd))
        if name == b'..':   # never above the backing directory
            if p is self.m.root:
                return self._entry(p, os.stat(p.fd))
            return self._entry(*self.m.adopt(os.open(b'..', os.O_PATH | os.O_CLOEXEC, dir_fd=p.fd)))
        n, st = self.m.lookup_at(p, name)
        return self._entry(n, st)

    async def forget(self, inode_list):
        for ino, count in inode_list:
            n = self.m.nodes.get(ino)
            if n is not None:
                n.lookups -= count
                self.m.release_check(n)

    @request
    def getattr(self, inode, ctx=None):
        n = self.m.node(inode)
        return self._attr(n, os.stat(n.fd))

    @request
    def setattr(self, inode, attr, fields, fh, ctx):
        n = self.m.node(inode)
        st0 = os.stat(n.fd)
        done = []
        if fields.update_size:
            self.m.content_changing(n)
            if fh is not None and fh in self.files:
                os.ftruncate(self.files[fh].fd, attr.st_size)
            else:
                os.truncate(proc(n.fd), attr.st_size)
            done.append(f'size={attr.st_size}')
        if fields.update_mode and n.kind != 'symlink':
            self.m.meta_changing(n)
            os.chmod(proc(n.fd), stat.S_IMODE(attr.st_mode))
            done.append(f'mode={stat.S_IMODE(attr.st_mode):o}')
        if fields.update_uid or fields.update_gid:
            self.m.meta_changing(n)
            uid = attr.st_uid if fields.update_uid else -1
            gid = attr.st_gid if fields.update_gid else -1
            chown_fd(n.fd, uid, gid)
            done.append(f'owner={uid}:{gid}')
        if (fields.update_atime or fields.update_mtime) and n.kind != 'symlink':
            self.m.meta_changing(n)
            at = attr.st_atime_ns if fields.update_atime else st0.st_atime_ns
            mt = attr.st_mtime_ns if fields.update_mtime else st0.st_mtime_ns
            os.utime(proc(n.fd), ns=(at, mt))
            done.append('times')
        if done:
            self.m.op('setattr', self.m.path_of(n), set=' '.join(done))
        return self._attr(n, os.stat(n.fd))

    @request
    def readlink(self, inode, ctx):
        return os.readlink(b'', dir_fd=self.m.node(inode).fd)

    @request
    def mknod(self, parent_inode, name, mode, rdev, ctx):
        p = self.m.node(parent_inode)
        os.mknod(name, mode, rdev, dir_fd=p.fd)
        return self._entry(*self._created(p, name, ctx, 'mknod'))

    @request
    def mkdir(self, parent_inode, name, mode, ctx):
        p = self.m.node(parent_inode)
        os.mkdir(name, mode, dir_fd=p.fd)
        return self._entry(*self._created(p, name, ctx, 'mkdir'))

    @request
    def symlink(self, parent_inode, name, target, ctx):
        p = self.m.node(parent_inode)
        os.symlink(target, name, dir_fd=p.fd)
        return self._entry(*self._created(p, name, ctx, 'symlink'))

    @request
    def link(self, inode, new_parent_inode, new_name, ctx):
        n, p = self.m.node(inode), self.m.node(new_parent_inode)
        link_fd(n.fd, p.fd, new_name)
        self.m.entry_changed(p, new_name, None)
        self.m.op('link', self.m.child_path(p, new_name), target=self.m.path_of(n))
        return self._entry(n, os.stat(n.fd))

    @request
    def unlink(self, parent_inode, name, ctx):
        p = self.m.node(parent_inode)
        victim = self._victim(p, name)
        try:
            path = self.m.child_path(p, name)
            os.unlink(name, dir_fd=p.fd)
            self.m.entry_changed(p, name, victim)
            self.m.op('unlink', path)
        finally:
            self.m.release_check(victim)

    @request
    def rmdir(self, parent_inode, name, ctx):
        p = self.m.node(parent_inode)
        victim = self._victim(p, name)
        try:
            path = self.m.child_path(p, name)
            os.rmdir(name, dir_fd=p.fd)
            victim.removed = True
            self.m.entry_changed(p, name, victim)
            self.m.op('rmdir', path)
        finally:
            self.m.release_check(victim)

    @request
    def rename(self, old_parent, old_name, new_parent, new_name, flags, ctx):
        po, pn = self.m.node(old_parent), self.m.node(new_parent)
        src = self._victim(po, old_name)
        try:
            dst = self._victim(pn, new_name)
        except FileNotFoundError:
            dst = None
        try:
            frm, to = self.m.child_path(po, old_name), self.m.child_path(pn, new_name)
            renameat2(po.fd, old_name, pn.fd, new_name, flags)
            self.m.entry_changed(po, old_name, src)
            self.m.entry_changed(pn, new_name, dst)
            if po is pn:
                self.m.link_names(po, old_name, new_name)
            if dst is not None and dst is not src:
                if flags & RENAME_EXCHANGE:
                    dst.parent, dst.name = po, old_name
                elif dst.kind == 'dir':
                    dst.removed = True
            src.parent, src.name = pn, new_name
            self.m.op('rename', frm, to=to, **({'flags': flags} if flags else {}))
        finally:
            self.m.release_check(src)
            if dst is not None:
                self.m.release_check(dst)

    # -- files -------------------------------------------------------------------------------------------------

    def _open_handle(self, n, fd, flags):
        n.opens += 1
        self.files[fd] = Handle(n, fd, bool(flags & SYNC_FLAGS))
        return pyfuse3.FileInfo(fh=fd)

    @request
    def open(self, inode, flags, ctx):
        n = self.m.node(inode)
        f = (flags & ~STRIP_OPEN) | os.O_CLOEXEC
        if f & os.O_TRUNC:
            self.m.content_changing(n)
        fd = os.open(proc(n.fd), f)
        if f & os.O_TRUNC:
            self.m.op('truncate', self.m.path_of(n), size=0)
        return self._open_handle(n, fd, flags)

    @request
    def create(self, parent_inode, name, mode, flags, ctx):
        p = self.m.node(parent_inode)
        f = (flags & ~(os.O_NOCTTY | getattr(os, 'O_DIRECT', 0))) | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(name, f | os.O_EXCL, stat.S_IMODE(mode), dir_fd=p.fd)
        except FileExistsError:
            if flags & os.O_EXCL:
                raise
            # Only if someone changed the backing directory behind our back: open what is there.
            n, st = self.m.lookup_at(p, name)
            if f & os.O_TRUNC:
                self.m.content_changing(n)
            fd = os.open(name, f & ~os.O_CREAT, dir_fd=p.fd)
            if f & os.O_TRUNC:
                self.m.op('truncate', self.m.path_of(n), size=0)
            return self._open_handle(n, fd, flags), self._entry(n, os.stat(n.fd))
        try:
            n, st = self._created(p, name, ctx, 'create')
        except BaseException:
            os.close(fd)
            raise
        return self._open_handle(n, fd, flags), self._entry(n, st)

    @request
    def read(self, fh, off, size):
        return os.pread(self.files[fh].fd, size, off)

    @request
    def write(self, fh, off, buf):
        h = self.files[fh]
        self.m.content_changing(h.node)
        view, done = memoryview(buf), 0
        while done < len(view):
            done += os.pwrite(h.fd, view[done:], off + done)
        if h.sync:
            self.m.fsync_file(h.node)   # O_SYNC/O_DSYNC: each write is its own durable point
        self.m.op('write', self.m.path_of(h.node), off=off, len=done, **({'sync': True} if h.sync else {}))
        return done

    async def flush(self, fh):
        return None

    async def release(self, fh):
        h = self.files.pop(fh, None)
        if h is not None:
            os.close(h.fd)
            h.node.opens -= 1
            self.m.release_check(h.node)

    @request
    def fsync(self, fh, datasync):
        h = self.files[fh]
        self.m.fsync_file(h.node)
        self.m.op('fdatasync' if datasync else 'fsync', self.m.path_of(h.node))

    # -- directories -------------------------------------------------------------------------------------------

    @request
    def opendir(self, inode, ctx):
        n = self.m.node(inode)
        if n.kind != 'dir':
            raise FUSEError(errno.ENOTDIR)
        dh = self.next_dh
        self.next_dh += 1
        n.opens += 1
        self.dirs[dh] = DirHandle(n)
        return dh

    @request
    def readdir(self, fh, start_id, token):
        dh = self.dirs[fh]
        if start_id == 0 or dh.names is None:
            dh.names = [] if dh.node.removed else sorted(os.listdir(proc(dh.node.fd).encode()))
        for i in range(start_id, len(dh.names)):
            name = dh.names[i]
            try:
                n, st = self.m.lookup_at(dh.node, name)
            except FileNotFoundError:
                continue
            if not pyfuse3.readdir_reply(token, name, self._attr(n, st), i + 1):
                self.m.release_check(n)
                return
            n.lookups += 1

    async def releasedir(self, fh):
        dh = self.dirs.pop(fh, None)
        if dh is not None:
            dh.node.opens -= 1
            self.m.release_check(dh.node)

    @request
    def fsyncdir(self, fh, datasync):
        dh = self.dirs[fh]
        self.m.fsync_dir(dh.node)
        self.m.op('fsyncdir', self.m.path_of(dh.node))

    @request
    def statfs(self, ctx):
        v = os.statvfs(proc(self.m.root.fd))
        s = pyfuse3.StatvfsData()
        s.f_bsize, s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail = v.f_bsize, v.f_frsize, v.f_blocks, v.f_bfree, v.f_bavail
        s.f_files, s.f_ffree, s.f_favail, s.f_namemax = v.f_files, v.f_ffree, v.f_favail, v.f_namemax
        return s

    async def access(self, inode, mode, ctx):
        return True   # default_permissions: the kernel checks permissions from our attributes itself
