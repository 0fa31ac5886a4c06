/**
 * Structured logs: one JSON line per event (pino), with the component and the object or
 * node it concerns. `PODNET_LOG_LEVEL` (trace|debug|info|warn|error|silent) sets the level;
 * `createLogger({ pretty: true })` prints human lines instead (the CLI's interactive
 * commands). Loggers are values passed to constructors, not module globals.
 */
import { pino } from 'pino';
import type { Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

export interface LoggerOptions {
  level?: string;
  /** Component name put on every line. */
  component?: string;
  /** Write to this stream (default stderr). */
  destination?: NodeJS.WritableStream;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? process.env.PODNET_LOG_LEVEL ?? 'info';
  const dest = opts.destination ?? process.stderr;
  return pino(
    {
      level,
      base: opts.component ? { component: opts.component } : {},
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest as pino.DestinationStream,
  );
}

/** A logger that drops everything (tests, library use). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
