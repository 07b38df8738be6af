/**
 * Structured JSON-line logs, one schema for every gm service (docs/design.md §7: no payloads). Each line is one JSON
 * object: `time` (ISO 8601), `level`, `service` (enclave, worker, host, proxy), `sim`, `event`, then the event's
 * fields; nothing else is written to the same stream. The logger takes an event name and a flat record of
 * scalar fields chosen by the caller: there is no way to pass a request or response body through it, and strings
 * are truncated so a mistaken field cannot carry a prompt. Under sim every line says `"sim":true`.
 * Shared by enclave/, worker/, host/ and the CLI's services (Node-only).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Readonly<Record<string, string | number | boolean | undefined>>;

export interface Logger {
  debug(event: string, f?: LogFields): void;
  info(event: string, f?: LogFields): void;
  warn(event: string, f?: LogFields): void;
  error(event: string, f?: LogFields): void;
  child(f: LogFields): Logger;
}

const MAX_STRING = 200;
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LoggerOptions {
  /** The service writing the line: `enclave`, `worker`, `host`, `proxy`. */
  readonly service: string;
  readonly sim: boolean;
  readonly sink?: (line: string) => void;
  readonly level?: LogLevel;
  readonly now?: () => number;
}

export function createLogger(o: LoggerOptions, base: LogFields = {}): Logger {
  const sink = o.sink ?? ((l: string) => void process.stderr.write(l));
  const min = ORDER[o.level ?? 'info'];
  const now = o.now ?? Date.now;
  const write = (level: LogLevel, event: string, f: LogFields = {}) => {
    if (ORDER[level] < min) return;
    const rec: Record<string, unknown> = { time: new Date(now()).toISOString(), level, service: o.service, sim: o.sim, event };
    for (const [k, v] of Object.entries({ ...base, ...f })) {
      if (v === undefined) continue;
      rec[k] = typeof v === 'string' && v.length > MAX_STRING ? `${v.slice(0, MAX_STRING)}…` : v;
    }
    sink(`${JSON.stringify(rec)}\n`);
  };
  return {
    debug: (e, f) => write('debug', e, f),
    info: (e, f) => write('info', e, f),
    warn: (e, f) => write('warn', e, f),
    error: (e, f) => write('error', e, f),
    child: (f) => createLogger(o, { ...base, ...f }),
  };
}

/** A logger that keeps lines in memory (tests search them for prompt bytes). */
export function memoryLogger(service: string, sim = true): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger({ service, sim, sink: (l) => void lines.push(l), level: 'debug' }), lines };
}
