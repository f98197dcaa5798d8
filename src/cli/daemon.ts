// `ferry daemon`: run in the foreground (systemd style) until SIGTERM/SIGINT; SIGHUP reloads config and keys.
import { Daemon } from '../daemon/daemon.js';
import { configFrom, type GlobalFlags } from './context.js';
import type { CliIO } from './io.js';
import { messageOf } from '../errors.js';

/** Runs the daemon until a stop signal; resolves to the exit code. */
export async function daemonCommand(flags: GlobalFlags, _io: CliIO): Promise<number> {
  const config = await configFrom(flags);
  const daemon = new Daemon(config);
  await daemon.start();
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      daemon.log.info({ signal }, 'stopping: finishing work in flight');
      daemon.stop().then(() => resolve(0), () => resolve(1)).finally(() => {
        process.off('SIGTERM', onTerm);
        process.off('SIGINT', onInt);
        process.off('SIGHUP', onHup);
      });
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    const onHup = () => {
      configFrom(flags)
        .then((c) => daemon.reload(c))
        .catch((err: unknown) => daemon.log.error({ err: messageOf(err) }, 'reload failed; keeping the running configuration'));
    };
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    process.on('SIGHUP', onHup);
  });
}
