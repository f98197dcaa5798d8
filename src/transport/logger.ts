// The logging surface transports use: a pino-compatible subset, so a pino logger (or nothing) can be passed in.

/** What a transport logs through. A pino `Logger` satisfies it. Library code never prints on its own. */
export interface TransportLogger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

/** A logger that drops everything (the default). */
export const silentLogger: TransportLogger = {
  debug() {},
  info() {},
  warn() {},
};
