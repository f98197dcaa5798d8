# The durability model: the inode table and, per inode, what a power cut would leave of it (entries, content, metadata).
#
# The backing directory always holds the *current* state (the pass-through writes there at once). The model
# remembers only the difference to the *durable* state, and only since the last durable point of each inode:
#   - a directory D keeps `orig`: for each name changed since D's last fsyncdir, what the name durably named then
#     (a Node, or None when the name was absent). Unlisted names are durable as they are now.
#   - a regular file keeps `dur_content`: None (the current content is durable), EMPTY (created since: zero bytes
#     are durable) or the path of a shadow copy taken just before its first change after its last fsync.
#   - any inode keeps `dur_meta` (mode, uid, gid, atime, mtime) from before its first change since its last fsync.
# Every change gets a record id (`rid`), in the order of the operations: reorder mode draws its coin per record,
# so a given seed and a given sequence of operations always give the same state.
import errno
import os
import stat

from pc_sys import copy_fd, proc

EMPTY = 'empty'
LOG_LIMIT = 1_000_000
O_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def meta_of(st):
    """The metadata a power cut can roll back with the content rule: mode, owner, access and modification times."""
    return (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns)


def kind_of(mode):
    if stat.S_ISDIR(mode):
        return 'dir'
    if stat.S_ISREG(mode):
        return 'file'
    if stat.S_ISLNK(mode):
        return 'symlink'
    return 'other'


class Node:
    """One backing inode, held open by an O_PATH descriptor while the kernel or the model refers to it."""

    __slots__ = ('ino', 'fd', 'key', 'kind', 'lookups', 'opens', 'pins', 'parent', 'name',
                 'dur_content', 'dur_meta', 'rid', 'orig', 'rids', 'group', 'removed')

    def __init__(self, ino, fd, st):
        self.ino = ino
        self.fd = fd
        self.key = (st.st_dev, st.st_ino)
        self.kind = kind_of(st.st_mode)
        self.lookups = 0      # the kernel's lookup count (FUSE forget protocol)
        self.opens = 0        # open file and directory handles
        self.pins = 0         # how many `orig` maps of directories name this inode
        self.parent = None    # last known place, for paths in the log and the report only
        self.name = None
        self.dur_content = None
        self.dur_meta = None
        self.rid = 0          # record id of this inode's pending content/metadata change
        self.orig = None      # directories: {name: Node | None}
        self.rids = None      # directories: {name: record id}
        self.group = None     # directories: {name: group id}; names linked by a rename inside D share one
        self.removed = False  # directories: rmdir'ed (their current listing is empty)

    def has_state(self):
        return self.dur_content is not None or self.dur_meta is not None or bool(self.orig)


class Model:
    """The inode table plus the durable/non-durable bookkeeping; every method runs on the one event-loop thread."""

    def __init__(self, backing, state_dir, cut_after=None):
        self.backing = backing
        self.shadow_dir = os.path.join(state_dir, 'shadow')
        os.makedirs(self.shadow_dir, exist_ok=True)
        fd = os.open(backing, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        root = Node(1, fd, os.fstat(fd))
        root.lookups = 1
        self.root = root
        self.nodes = {1: root}
        self.keys = {root.key: root}
        self.next_ino = 2
        self.seq = 0            # mutating operations so far
        self.rec = 0            # record ids handed out
        self.durable = 0        # changes made durable since mount
        self.log = []
        self.log_dropped = 0
        self.cut_after = cut_after
        self.cutting = False
        self.on_cut = None      # set by the main loop: called once when --cut-after fires

    # -- inode table -------------------------------------------------------------------------------------------

    def node(self, ino):
        n = self.nodes.get(ino)
        if n is None:
            raise OSError(errno.ESTALE, 'unknown inode')
        return n

    def lookup_at(self, parent, name):
        """The Node for `name` in directory `parent` (registered if new) and its stat, without following symlinks."""
        n, st = self.adopt(os.open(name, O_PATH_FLAGS, dir_fd=parent.fd))
        n.parent, n.name = parent, name
        return n, st

    def adopt(self, fd):
        """The Node for the inode behind O_PATH `fd` (which this takes over) and its stat."""
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        n = self.keys.get((st.st_dev, st.st_ino))
        if n is not None:
            os.close(fd)
        else:
            n = Node(self.next_ino, fd, st)
            self.next_ino += 1
            self.nodes[n.ino] = n
            self.keys[n.key] = n
        return n, st

    def release_check(self, n):
        """Forget `n` once neither the kernel, an open handle nor the model needs it."""
        if n.ino == 1 or n.lookups > 0 or n.opens > 0 or n.pins > 0 or n.has_state():
            return
        if self.nodes.get(n.ino) is n:
            del self.nodes[n.ino]
            if self.keys.get(n.key) is n:
                del self.keys[n.key]
            os.close(n.fd)

    def path_of(self, n):
        parts, cur = [], n
        while cur is not None and cur.ino != 1 and len(parts) < 256:
            parts.append(os.fsdecode(cur.name))
            cur = cur.parent
        prefix = '' if cur is not None and cur.ino == 1 else '?'
        return prefix + '/' + '/'.join(reversed(parts))

    def child_path(self, d, name):
        base = self.path_of(d)
        return (base if base.endswith('/') else base + '/') + os.fsdecode(name)

    # -- recording changes (call *before* the change for content/metadata, *after* it for entries) --------------

    def _next_rid(self):
        self.rec += 1
        return self.rec

    def entry_changed(self, d, name, before):
        """`name` in directory `d` changed; `before` is what it named just before (None: absent)."""
        if d.orig is None:
            d.orig, d.rids, d.group = {}, {}, {}
        if name in d.orig:
            return
        d.orig[name] = before
        if before is not None:
            before.pins += 1
        rid = self._next_rid()
        d.rids[name] = rid
        d.group[name] = rid

    def link_names(self, d, a, b):
        """A rename inside one directory is atomic: its two names are kept or dropped together."""
        ga, gb = d.group.get(a), d.group.get(b)
        if ga is None or gb is None or ga == gb:
            return
        keep, drop = min(ga, gb), max(ga, gb)
        for k, g in d.group.items():
            if g == drop:
                d.group[k] = keep

    def meta_changing(self, n):
        if n.dur_meta is not None:
            return
        n.dur_meta = meta_of(os.stat(n.fd))
        if not n.rid:
            n.rid = self._next_rid()

    def content_changing(self, n):
        """Copy-on-write: save the durable content of regular file `n` before its first change since its fsync."""
        if n.kind != 'file' or n.dur_content is not None:
            return
        self.meta_changing(n)
        path = os.path.join(self.shadow_dir, f'{n.ino}.{self._next_rid()}')
        src = os.open(proc(n.fd), os.O_RDONLY | os.O_CLOEXEC)
        try:
            dst = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                copy_fd(src, dst)
                st = os.fstat(src)
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)
        n.dur_content = path

    def new_file(self, n, st):
        """A regular file created since the last durable point: only its empty self, with its first mode, is durable."""
        n.dur_content = EMPTY
        n.dur_meta = meta_of(st)
        n.rid = self._next_rid()

    # -- durable points ----------------------------------------------------------------------------------------

    def fsync_file(self, n):
        if n.dur_content is None and n.dur_meta is None:
            return
        self.durable += 1
        if n.dur_content not in (None, EMPTY):
            try:
                os.unlink(n.dur_content)
            except FileNotFoundError:
                pass
        n.dur_content = n.dur_meta = None
        n.rid = 0
        self.release_check(n)

    def fsync_dir(self, d):
        if d.orig:
            self.durable += len(d.orig)
            pinned = [v for v in d.orig.values() if v is not None]
            d.orig = d.rids = d.group = None
            for v in pinned:
                v.pins -= 1
                self.release_check(v)
        d.orig = d.rids = d.group = None
        if d.dur_meta is not None:
            self.durable += 1
            d.dur_meta = None
            d.rid = 0
        self.release_check(d)

    def sync_all(self):
        for n in list(self.nodes.values()):
            if n.kind == 'dir':
                self.fsync_dir(n)
            else:
                self.fsync_file(n)

    # -- operation log and counter -----------------------------------------------------------------------------

    def op(self, kind, path, **extra):
        """Count one completed mutating operation; fire --cut-after when it is the Nth."""
        self.seq += 1
        if len(self.log) < LOG_LIMIT:
            entry = {'n': self.seq, 'op': kind, 'path': path}
            entry.update(extra)
            self.log.append(entry)
        else:
            self.log_dropped += 1
        if self.cut_after is not None and self.seq >= self.cut_after and not self.cutting:
            self.cutting = True
            if self.on_cut is not None:
                self.on_cut('cut-after')

    # -- status ------------------------------------------------------------------------------------------------

    def current_key(self, d, name):
        if d.removed:
            return None
        try:
            st = os.stat(name, dir_fd=d.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def meta_differs(self, n):
        """Whether `n`'s durable metadata differs from its current one (directories: mode and owner only)."""
        cur, dur = meta_of(os.stat(n.fd)), n.dur_meta
        return cur[:3] != dur[:3] if n.kind == 'dir' else cur != dur

    def pending(self):
        """Counts of non-durable changes: directory entries, file contents, metadata-only."""
        entries = contents = metadata = 0
        for n in list(self.nodes.values()):
            for name, before in (n.orig or {}).items():
                if self.current_key(n, name) != (before.key if before is not None else None):
                    entries += 1
            if n.dur_content is not None:
                if n.dur_content != EMPTY or os.stat(n.fd).st_size > 0:
                    contents += 1
                    continue
            if n.dur_meta is not None and self.meta_differs(n):
                metadata += 1
        return {'entries': entries, 'contents': contents, 'metadata': metadata}
