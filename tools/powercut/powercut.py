#!/usr/bin/python3
# Power-cut simulator: a FUSE pass-through over a backing directory that tracks what is durable and, on command,
# cuts the power (kills users, unmounts, rewrites the backing directory). Control: JSON lines on a Unix socket.
#
#   /usr/bin/python3 powercut.py --backing B --mount M --state S --socket SOCK [--mode strict|reorder] [--seed N]
#                                [--cut-after N]
# Writes S/ready.json once mounted and serving, S/cut-report.json after a cut. Needs root (allow_other, kills).
import argparse
import errno
import json
import os
import resource
import shutil
import signal
import struct
import sys
import time

sys.dont_write_bytecode = True   # leave no __pycache__ in the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pyfuse3  # noqa: E402
import trio  # noqa: E402

import pc_cut  # noqa: E402
from pc_fs import PowercutFS  # noqa: E402
from pc_model import Model  # noqa: E402

MAX_REQUEST = 1 << 16


def parse(argv):
    ap = argparse.ArgumentParser(prog='powercut.py')
    ap.add_argument('--backing', required=True)
    ap.add_argument('--mount', required=True)
    ap.add_argument('--state', required=True)
    ap.add_argument('--socket', required=True)
    ap.add_argument('--mode', choices=['strict', 'reorder'], default='strict')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--cut-after', type=int, default=None)
    ap.add_argument('--debug', action='store_true')
    a = ap.parse_args(argv)
    if a.cut_after is not None and a.cut_after < 1:
        ap.error('--cut-after must be a positive number of operations')
    return a


def write_json(path, data):
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f)
    os.rename(tmp, path)


class Server:
    """Owns the event loop: the FUSE session, the control socket, the cut and the clean shutdown."""

    def __init__(self, args, model, mount):
        self.a, self.m = args, model
        self.mount = mount   # resolved before mounting: resolving it now would wait on ourselves
        self.finished = trio.Event()   # the FUSE loop ended and the backing directory is final
        self.cut_done = trio.Event()   # the cut killed and unmounted (the loop may end before: the unmount ends it)
        self.ending = None             # 'cut', 'cut-after', 'unmount', 'signal' once decided
        self.report = None
        self.killed, self.spared, self.unmounted = [], [], []
        self.nursery = None

    async def run(self):
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.m.on_cut = lambda why: nursery.start_soon(self.cut, why)
            listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
            try:
                os.unlink(self.a.socket)
            except FileNotFoundError:
                pass
            await listener.bind(self.a.socket)
            os.chmod(self.a.socket, 0o600)
            listener.listen(64)
            nursery.start_soon(self.serve, listener)
            nursery.start_soon(self.signals)
            write_json(os.path.join(self.a.state, 'ready.json'), {'pid': os.getpid(), 'mount': self.mount})
            try:
                await pyfuse3.main()
            finally:
                self.m.cutting = True
            if self.ending in ('cut', 'cut-after'):
                await self.cut_done.wait()
                t0 = time.monotonic()
                result = pc_cut.rebuild(self.m, self.a.state, self.a.mode, self.a.seed)
                self.report = {'reason': self.ending, 'mode': self.a.mode, 'seed': self.a.seed, 'ops': self.m.seq,
                               'killed': self.killed, 'spared': self.spared, 'unmounted': self.unmounted,
                               'rewriteMs': round((time.monotonic() - t0) * 1000, 1), **result}
                write_json(os.path.join(self.a.state, 'cut-report.json'), self.report)
            else:
                shutil.rmtree(self.m.shadow_dir, ignore_errors=True)   # a clean shutdown keeps everything
            self.finished.set()
            await trio.sleep(0.1)   # let waiting control clients receive their reply
            nursery.cancel_scope.cancel()

    async def signals(self):
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as rx:
            async for _ in rx:
                if self.ending is None:
                    self.ending = 'signal'
                    _, mounts = pc_cut.our_mounts(self.mount)
                    await trio.to_thread.run_sync(pc_cut.unmount_all, self.mount, mounts, True)
                    pyfuse3.terminate()

    async def cut(self, why, spare=()):
        """Cut the power. `spare`: the pid that asked for the cut (a test runner is not the system under test)."""
        if self.ending is not None:
            return
        self.ending = why
        self.m.cutting = True
        try:
            dev, mounts = pc_cut.our_mounts(self.mount)
            if dev is not None:
                self.killed, self.spared = await pc_cut.kill_users(dev, mounts, trio.sleep, spare)
                self.unmounted = await trio.to_thread.run_sync(pc_cut.unmount_all, self.mount, mounts, True)
        finally:
            self.cut_done.set()
            pyfuse3.terminate()

    async def unmount(self):
        """Clean shutdown: everything the backing directory holds stays; refused while processes use the mount."""
        if self.ending is not None:
            return None
        dev, mounts = pc_cut.our_mounts(self.mount)
        try:
            await trio.to_thread.run_sync(pc_cut.unmount_all, self.mount, mounts, False)
        except OSError as e:
            busy = sorted(pc_cut.users(dev, mounts)) if dev else []
            return {'error': 'busy' if e.errno == errno.EBUSY else os.strerror(e.errno or errno.EIO), 'pids': busy}
        self.ending = 'unmount'
        pyfuse3.terminate()
        return None

    def status(self):
        return {'pid': os.getpid(), 'mount': self.mount, 'backing': self.m.backing, 'mode': self.a.mode,
                'seed': self.a.seed, 'cutAfter': self.a.cut_after, 'ops': self.m.seq, 'durable': self.m.durable,
                'pending': self.m.pending() if not self.finished.is_set() else None,
                'cutting': self.m.cutting, 'inodes': len(self.m.nodes)}

    async def dispatch(self, req, peer):
        cmd = req.get('cmd')
        if cmd == 'status':
            return self.status()
        if cmd == 'log':
            start = int(req.get('from', 0))
            return {'ops': self.m.seq, 'dropped': self.m.log_dropped, 'entries': self.m.log[start:]}
        if cmd == 'sync':
            if self.m.cutting:
                return {'error': 'cutting'}
            self.m.sync_all()
            return {'ok': True, 'ops': self.m.seq}
        if cmd == 'cut':
            await self.cut('cut', (peer,) if peer else ())
            await self.finished.wait()
            return self.report if self.report is not None else {'error': f'ended by {self.ending}'}
        if cmd == 'unmount':
            err = await self.unmount()
            if err is not None:
                return err
            await self.finished.wait()
            return {'ok': True, 'ending': self.ending}
        return {'error': f'unknown command {cmd!r}'}

    async def serve(self, listener):
        while True:
            conn, _ = await listener.accept()
            self.nursery.start_soon(self.handle, conn)

    async def handle(self, conn):
        with conn:
            buf = b''
            while b'\n' not in buf and len(buf) < MAX_REQUEST:
                chunk = await conn.recv(4096)
                if not chunk:
                    break
                buf += chunk
            try:
                req = json.loads(buf.split(b'\n', 1)[0] or b'{}')
                creds = conn.getsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_PEERCRED, struct.calcsize('3i'))
                reply = await self.dispatch(req if isinstance(req, dict) else {}, struct.unpack('3i', creds)[0])
            except Exception as e:   # a bad request must never take the file system down
                reply = {'error': f'{type(e).__name__}: {e}'}
            data = (json.dumps(reply) + '\n').encode()
            while data:
                n = await conn.send(data)
                data = data[n:]


def raise_fd_limit():
    try:
        with open('/proc/sys/fs/nr_open') as f:
            cap = int(f.read())
        resource.setrlimit(resource.RLIMIT_NOFILE, (cap, cap))
    except (OSError, ValueError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main():
    a = parse(sys.argv[1:])
    os.umask(0)          # modes arrive already masked by the kernel
    raise_fd_limit()     # one O_PATH descriptor per inode the kernel or the model knows
    backing, mount = os.path.realpath(a.backing), os.path.realpath(a.mount)
    shutil.rmtree(os.path.join(a.state, 'shadow'), ignore_errors=True)
    model = Model(backing, a.state, a.cut_after)
    opts = set(pyfuse3.default_options) | {'allow_other', f'fsname=powercut:{backing}', 'subtype=powercut'}
    if a.debug:
        opts.add('debug')
    pyfuse3.init(PowercutFS(model), mount, opts)
    server = Server(a, model, mount)
    ok = False
    try:
        trio.run(server.run)
        ok = True
    finally:
        pyfuse3.close(unmount=not ok)
        try:
            os.unlink(a.socket)
        except OSError:
            pass


if __name__ == '__main__':
    main()
