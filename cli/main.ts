/**
 * The `gm` command line: parses with the declarations in commands.ts and turns every failure into one line on
 * stderr (and, under --json, a JSON object on stdout). Exit codes: 0 success / verified, 1 rejected or failed,
 * 2 usage or configuration. Library choice: commander (nested commands, generated help, "did you mean", no
 * dependencies of its own); node:util parseArgs has no commands, help or suggestions.
 */
import { GmError } from '../attestation/errors.ts';
import { packageVersion } from '../enclave/version.ts';
import { COMMANDS } from './commands.ts';
import { type Io, nodeIo } from './io.ts';
import { buildProgram, CommanderError, type ParseState } from './program.ts';

/** Node's system errors that a user can act on, with the flag whose value they concern. */
interface SystemError extends Error {
  code?: string;
  syscall?: string;
  address?: string;
  port?: number;
  path?: string;
  hostname?: string;
}

/** The flag (or argument) whose value mentions `needle`, for naming it in an error line. */
function flagFor(state: ParseState, needle: string | undefined): string {
  if (!needle) return '';
  for (const [k, v] of Object.entries(state.flags)) for (const x of Array.isArray(v) ? v : [v]) if (typeof x === 'string' && x.includes(needle)) return ` (--${k})`;
  if (state.args.some((a) => a.includes(needle))) return ` (argument ${state.args.find((a) => a.includes(needle))})`;
  return '';
}

/** ` (--flag)` when the message quotes a flag's path or URL value but not the flag itself. */
function namedFlag(state: ParseState, message: string): string {
  for (const [k, v] of Object.entries(state.flags))
    for (const x of Array.isArray(v) ? v : [v])
      if (typeof x === 'string' && /[/:.]/.test(x) && x.length >= 4 && message.includes(x)) return message.includes(`--${k}`) ? '' : ` (--${k})`;
  return '';
}

/** One line for an error that is not a GmError, and its exit code; undefined when it is not one we can explain. */
function explain(e: unknown, state: ParseState): { code: string; message: string; exit: number } | undefined {
  const err = e as SystemError;
  const cause = (err?.cause ?? undefined) as SystemError | undefined;
  const sys = err?.code ? err : cause?.code ? cause : undefined;
  if (sys?.syscall === 'listen' || sys?.code === 'EADDRINUSE') {
    const where = `${sys.address ?? ''}:${sys.port ?? ''}`;
    const what = sys.code === 'EADDRINUSE' ? 'is already in use' : sys.code === 'EACCES' ? 'may not be listened on by this user' : `cannot be listened on (${sys.code})`;
    return { code: sys.code ?? 'LISTEN_FAILED', message: `${where} ${what}${flagFor(state, String(sys.port ?? '')) || ' (--listen)'}`, exit: 1 };
  }
  if (sys?.code && ['ENOENT', 'EACCES', 'EISDIR', 'ENOTDIR', 'EEXIST', 'EROFS', 'ENOSPC'].includes(sys.code) && sys.path) {
    return { code: sys.code, message: `${sys.path}: ${sys.code === 'ENOENT' ? 'no such file or directory' : sys.code}${flagFor(state, sys.path)}`, exit: 2 };
  }
  if (err instanceof TypeError && err.message === 'fetch failed') {
    const host = cause?.address ? `${cause.address}:${cause.port ?? ''}` : cause?.hostname;
    const needle = cause?.port !== undefined ? `:${cause.port}` : cause?.hostname;
    return { code: cause?.code ?? 'FETCH_FAILED', message: `cannot reach ${host ?? 'the server'} (${cause?.code ?? cause?.message ?? 'fetch failed'})${flagFor(state, needle)}`, exit: 1 };
  }
  if (err?.code === 'ERR_SQLITE_ERROR') return { code: 'LEDGER_UNREADABLE', message: `the ledger cannot be used: ${err.message}${state.flags.ledger ? ' (--ledger)' : ''}`, exit: 2 };
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') return { code: 'TIMEOUT', message: `a request timed out (${err.message})`, exit: 1 };
  if (err instanceof SyntaxError && /JSON/.test(err.message)) return { code: 'NOT_JSON', message: `a file that should hold JSON does not: ${err.message}`, exit: 2 };
  return undefined;
}

/** Is --json among the flags (before any `--`)? Errors found while parsing are then JSON too. */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

export async function main(argv: readonly string[], io: Io = nodeIo): Promise<number> {
  const state: ParseState = { path: '', flags: {}, args: [], code: 0 };
  const json = wantsJson(argv);
  /** One line on stderr (`gm CMD: [CODE: ]message`); under --json also `{"error": ...}` on stdout. */
  const fail = (code: string, kind: string, message: string, exit: number, showCode = true): number => {
    const who = state.path ? `gm ${state.path}` : 'gm';
    message = message.startsWith(`${who} `) ? message.slice(who.length + 1) : message;
    io.err(`${who}: ${showCode ? `${code}: ` : ''}${message}\n`);
    if (json) io.out(`${JSON.stringify({ error: { code, kind, message } })}\n`);
    return exit;
  };
  const program = buildProgram(COMMANDS, io, packageVersion(), state);
  // `gm help receipts account`: commander's help command looks one word deep; the flag form reaches any depth.
  const args = argv[0] === 'help' && argv.length > 2 ? [...argv.slice(1), '--help'] : [...argv];
  try {
    await program.parseAsync(args, { from: 'user' });
    return state.code;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and --version exit 0; `gm` or a group alone printed its help on stderr: a usage error.
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
      if (e.code === 'commander.help') return e.exitCode === 0 ? 0 : 2;
      const hint = state.path ? `gm ${state.path} --help` : 'gm --help';
      return fail('USAGE', 'config', `${state.usage ?? e.message} (see ${hint})`, 2, false);
    }
    if (e instanceof GmError) {
      const usage = e.code === 'USAGE' ? ` (see ${state.path ? `gm ${state.path}` : 'gm'} --help)` : '';
      return fail(e.code, e.kind, `${e.message}${usage || namedFlag(state, e.message)}`, e.kind === 'config' ? 2 : 1, e.code !== 'USAGE');
    }
    const x = explain(e, state);
    const verbose = state.flags.verbose === true || argv.includes('--verbose');
    if (verbose) io.err(`${(e as Error)?.stack ?? String(e)}\n`);
    if (x) return fail(x.code, x.exit === 2 ? 'config' : 'unavailable', x.message, x.exit);
    return fail('INTERNAL', 'internal', `unexpected failure: ${(e as Error)?.message ?? String(e)}${verbose ? '' : ' (--verbose prints the stack trace)'}`, 1, false);
  }
}

/** The process entry: a closed stdout (`gm ... --json | head`) ends the command quietly. */
export async function runProcess(argv: readonly string[]): Promise<void> {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  process.exitCode = await main(argv);
}
