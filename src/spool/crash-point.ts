// Named instants where crash tests kill the process: FERRY_CRASH_AT=<name> makes that instant a SIGKILL.
//
// Production never sets the variable; the check is one string compare. Tests spawn real child
// processes with it set, so "kill -9 between step A and step B" is exact and repeatable.

const target = process.env.FERRY_CRASH_AT;
const skip = Number(process.env.FERRY_CRASH_SKIP ?? '0');
let seen = 0;

/** Kills this process with SIGKILL when `FERRY_CRASH_AT` names this point (after `FERRY_CRASH_SKIP` passes). */
export function crashPoint(name: string): void {
  if (target === undefined || target !== name) return;
  if (seen++ < skip) return;
  process.kill(process.pid, 'SIGKILL');
}
