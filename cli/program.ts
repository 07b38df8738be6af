/**
 * How a `gm` command is declared, and the one place that turns the declarations into a parser. commander parses
 * (nested commands, `--help`/`-h`/`gm help CMD`, `--version`, "did you mean" suggestions for commands and flags);
 * environment variables (GM_<FLAG>) are applied here from the injected Io instead of commander's own env support,
 * which reads process.env and so could not be tested in process. Values stay strings: each command's run() keeps
 * its own range and format checks, which report the flag by name.
 */
import { Command, CommanderError, Help, type Option } from 'commander';
import { configError } from '../attestation/errors.ts';
import type { Io } from './io.ts';

/** A flag: with `value` it takes one (`--name VALUE`), with `repeat` it may be given several times, else boolean. */
export interface FlagSpec {
  readonly help: string;
  /** Name of the value in help (FILE, URL, N...); absent for a boolean flag. */
  readonly value?: string;
  /** May be repeated; the command gets the values in order. */
  readonly repeat?: boolean;
  /** Whether GM_<NAME> may give it (default: the command's `env`). */
  readonly env?: boolean;
  /**
   * A secret that only GM_<NAME> may give: the command line is readable by every local user (`ps`), so the flag
   * is refused there with this error, while the command line is parsed, before anything runs.
   */
  readonly envOnly?: { readonly code: string; readonly message: string };
  /** An empty value is meaningful (a kernel command line); otherwise `--flag ''` is refused. */
  readonly allowEmpty?: boolean;
  /** Checks a value (from the command line or the environment) before run(); throws a USAGE error. */
  readonly check?: (value: string, flag: string) => void;
}
export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

/** The parsed flags as run() receives them, keyed by flag name without the dashes. */
export type Flags<S extends FlagSpecs> = {
  readonly [K in keyof S]?: S[K] extends { readonly repeat: true } ? readonly string[] : S[K] extends { readonly value: string } ? string : boolean;
};

export interface CommandSpec<S extends FlagSpecs = FlagSpecs> {
  /** Words after `gm`: `verify snp`. A command whose words are a prefix of others is their group. */
  readonly name: string;
  readonly summary: string;
  /** Positional arguments in commander notation: `<file>`, `[dir]`, `[prompt...]`. */
  readonly args?: string;
  readonly flags?: S;
  /** Longer help printed after the options. */
  readonly details?: string;
  /** Every flag may come from GM_<FLAG> (underscores for dashes) unless the flag says otherwise. */
  readonly env?: boolean;
  /** Absent for a group that only holds subcommands. */
  readonly run?: (flags: Flags<S>, args: readonly string[], io: Io) => Promise<number>;
}

/** Declares a command with its flags' types inferred from the declaration. */
export function command<const S extends FlagSpecs>(spec: CommandSpec<S>): CommandSpec {
  return spec as unknown as CommandSpec;
}

export const envName = (flag: string): string => `GM_${flag.toUpperCase().replace(/-/g, '_')}`;

/** What the last parse reached: the command's words and its flags (to name the flag a failure came from). */
export interface ParseState {
  path: string;
  flags: Readonly<Record<string, unknown>>;
  args: readonly string[];
  /** A usage error commander reported, already one line. */
  usage?: string;
  code: number;
}

const helpText = new WeakMap<Option, string>();

class GmHelp extends Help {
  override optionDescription(option: Option): string {
    return helpText.get(option) ?? super.optionDescription(option);
  }
}

/** commander's two-line messages ("error: unknown option '--x'\n(Did you mean --y?)") as one line. */
export function oneLine(message: string): string {
  return message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim();
}

function envValue(spec: FlagSpec, flag: string, raw: string): string | readonly string[] | boolean {
  const name = envName(flag);
  if (spec.value === undefined) {
    if (raw === '1' || raw === 'true') return true;
    if (raw === '0' || raw === 'false') return false;
    throw configError('USAGE', `${name} must be 1, true, 0 or false (it sets --${flag})`);
  }
  return spec.repeat ? raw.split(',').filter((s) => s !== '') : raw;
}

/** The flags of one command: command line first, then GM_<FLAG> from io.env, then each flag's check. */
function collectFlags(cmd: Command, spec: CommandSpec, io: Io): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [flag, f] of Object.entries(spec.flags ?? {})) {
    const attr = cmd.options.find((o) => o.long === `--${flag}`)!.attributeName();
    const fromCli = cmd.getOptionValueSource(attr) === 'cli';
    let v: unknown = cmd.getOptionValue(attr);
    // commander reads `--no-x` as x = false (default true); the command sees `no-x: true` when it was given.
    if (flag.startsWith('no-')) v = fromCli ? v === false : undefined;
    if (!fromCli) {
      v = undefined;
      const raw = (f.envOnly ?? f.env ?? spec.env) ? io.env[envName(flag)] : undefined;
      if (raw !== undefined && raw !== '') v = envValue(f, flag, raw);
    }
    if (v === undefined) continue;
    if (f.check) for (const x of Array.isArray(v) ? v : [v]) if (typeof x === 'string') f.check(x, flag);
    out[flag] = v;
  }
  return out;
}

const VERBOSE: FlagSpec = { help: 'on an unexpected failure, also print the stack trace', env: false };

/**
 * Builds the commander program for `specs`. Output goes to `io`; every error becomes a CommanderError or the
 * command's own exception, never a process exit. `state` records how far the parse got, for the error line.
 */
export function buildProgram(specs: readonly CommandSpec[], io: Io, version: string, state: ParseState): Command {
  const program = new Command('gm');
  const pathOf = new Map<Command, string>();
  const configure = (cmd: Command, path: string) => {
    pathOf.set(cmd, path);
    // Errors thrown while a subcommand's flags are parsed name that subcommand.
    cmd.hook('preSubcommand', (_cmd, sub) => {
      state.path = pathOf.get(sub) ?? state.path;
    });
    cmd
      .exitOverride()
      .configureOutput({
        writeOut: (s) => io.out(s),
        writeErr: (s) => io.err(s),
        outputError: (s) => {
          state.path = path;
          state.usage = oneLine(s);
        },
        getOutHelpWidth: () => 100,
        getErrHelpWidth: () => 100,
        getOutHasColors: () => false,
        getErrHasColors: () => false,
      })
      .helpOption('-h, --help', 'print this help');
  };
  program.createHelp = () => Object.assign(new GmHelp(), { sortSubcommands: false });
  configure(program, '');
  program
    .description('gm: a confidential routing enclave for AI inference, its workers, host shim, client and verifiers')
    .version(version, '--version', 'print the version of gm')
    .enablePositionalOptions()
    .helpCommand('help [command]', 'print help for a command')
    .addHelpText('after', '\nExit codes: 0 success or verified, 1 rejected or failed, 2 usage or configuration error.\nRun `gm help <command>` or `gm <command> --help` for its flags.');

  const byPath = new Map<string, Command>([['', program]]);
  for (const spec of specs) {
    const words = spec.name.split(' ');
    const parent = byPath.get(words.slice(0, -1).join(' '));
    if (!parent) throw new Error(`gm: ${spec.name} is declared before its group`);
    const cmd = parent.command(words.at(-1)!).summary(spec.summary).description(spec.summary);
    cmd.createHelp = program.createHelp;
    configure(cmd, spec.name);
    byPath.set(spec.name, cmd);

    if (spec.args) cmd.arguments(spec.args);
    if (spec.details) cmd.addHelpText('after', `\n${spec.details.trim()}`);
    if (!spec.run) continue;
    const flags: Record<string, FlagSpec> = { ...spec.flags };
    if (!flags.verbose) flags.verbose = VERBOSE;
    const envOnly: string[] = [];
    for (const [flag, f] of Object.entries(flags)) {
      const o = cmd.createOption(f.value ? `--${flag} <${f.value}>` : `--${flag}`);
      if (f.envOnly) {
        const refusal = f.envOnly;
        // Registered only to refuse it by name (the value is never echoed); listed under "Environment only".
        o.hideHelp().argParser(() => {
          throw configError(refusal.code, refusal.message);
        });
        cmd.addOption(o);
        envOnly.push(`  ${envName(flag).padEnd(22)} ${f.help}`);
        continue;
      }
      const nonEmpty = (v: string): string => {
        if (v === '' && !f.allowEmpty) throw configError('USAGE', `--${flag} needs a value`);
        return v;
      };
      if (f.repeat) o.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), nonEmpty(v)]);
      // A value flag given twice is refused rather than the last one winning silently (`--policy a --policy b`).
      else if (f.value)
        o.argParser((v: string, prev: string | undefined) => {
          if (prev !== undefined) throw configError('USAGE', `--${flag} given twice`);
          return nonEmpty(v);
        });
      const env = f.env ?? spec.env;
      helpText.set(o, `${f.help}${f.repeat ? ' (repeatable)' : ''}${env ? ` [env ${envName(flag)}]` : ''}`);
      cmd.addOption(o);
    }
    if (envOnly.length > 0) cmd.addHelpText('after', `\nEnvironment only (never on the command line, where every local user can read it):\n${envOnly.join('\n')}`);
    const withVerbose: CommandSpec = { ...spec, flags };
    cmd.action(async () => {
      state.path = spec.name;
      const positionals = cmd.processedArgs.flat().filter((a): a is string => typeof a === 'string');
      state.args = positionals;
      const f = collectFlags(cmd, withVerbose, io);
      state.flags = f;
      state.code = await spec.run!(f as Flags<FlagSpecs>, positionals, io);
    });
  }
  return program;
}

export { CommanderError };
