# System calls Python's os module lacks (renameat2, linkat/fchownat with AT_EMPTY_PATH, umount2) and file copying.
import ctypes
import ctypes.util
import errno
import fcntl
import os
import stat

_libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_libc.linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
_libc.fchownat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

AT_EMPTY_PATH = 0x1000
MNT_DETACH = 2
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
FICLONE = 0x40049409


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f'{what}: {os.strerror(e)}')


def proc(fd):
    """The /proc magic link that reopens an O_PATH descriptor (works for deleted files too)."""
    return f'/proc/self/fd/{fd}'


def renameat2(olddir, old, newdir, new, flags=0):
    _check(_libc.renameat2(olddir, old, newdir, new, flags), 'renameat2')


def link_fd(fd, newdir, new):
    """Give the inode behind O_PATH `fd` one more name (needs CAP_DAC_READ_SEARCH: we run as root)."""
    _check(_libc.linkat(fd, b'', newdir, new, AT_EMPTY_PATH), 'linkat')


def chown_fd(fd, uid, gid):
    """fchownat(fd, "", AT_EMPTY_PATH): works on O_PATH descriptors, symlinks included; -1 keeps a field."""
    _check(_libc.fchownat(fd, b'', uid & 0xFFFFFFFF, gid & 0xFFFFFFFF, AT_EMPTY_PATH), 'fchownat')


def umount_lazy(path):
    _check(_libc.umount2(os.fsencode(path), MNT_DETACH), f'umount2 {path}')


def umount(path):
    _check(_libc.umount2(os.fsencode(path), 0), f'umount {path}')


def copy_fd(src, dst):
    """Copy all of `src` into `dst` (both real descriptors): a reflink when the file system can, else in-kernel copy."""
    try:
        fcntl.ioctl(dst, FICLONE, src)
        return
    except OSError:
        pass
    size = os.fstat(src).st_size
    off = 0
    while off < size:
        try:
            n = os.copy_file_range(src, dst, min(size - off, 1 << 30), off, off)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            n = _copy_plain(src, dst, off, size)
        if n == 0:
            break
        off += n


def _copy_plain(src, dst, off, size):
    start = off
    while off < size:
        buf = os.pread(src, min(1 << 20, size - off), off)
        if not buf:
            break
        os.pwrite(dst, buf, off)
        off += len(buf)
    return off - start


def copy_inode(fd, dirfd, name):
    """Create `name` in `dirfd` as a copy of the inode behind O_PATH `fd` (content, mode, owner, times)."""
    st = os.stat(fd)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink('', dir_fd=fd), name, dir_fd=dirfd)
    elif stat.S_ISREG(st.st_mode):
        src = os.open(proc(fd), os.O_RDONLY | os.O_CLOEXEC)
        try:
            dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
            try:
                copy_fd(src, dst)
            finally:
                os.close(dst)
        finally:
            os.close(src)
    else:
        os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dirfd)
    os.chown(name, st.st_uid, st.st_gid, dir_fd=dirfd, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dirfd)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dirfd)
