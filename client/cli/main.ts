/**
 * The `gm` command line. Each command lives in its own module under client/cli/ (or its component's folder) and
 * exports `run(argv, io): Promise<number>`. Exit codes: 0 success / verified, 1 rejected, 2 usage or configuration.
 */
import { GmError } from '../../attestation/errors.ts';
import type { Io } from './io.ts';
import { nodeIo } from './io.ts';

export interface CommandModule {
  run(argv: string[], io: Io): Promise<number>;
}

/** Command words → module path (relative to the repository root) and one-line help. */
const COMMANDS: Record<string, { module: string; help: string }> = {
  'verify snp': { module: 'client/cli/verify-snp.ts', help: 'verify an AMD SEV-SNP report: --report FILE [--cert FILE] [--chain FILE] [--crl FILE] [--policy FILE] [--now ISO] [--json]' },
  'verify tdx': { module: 'client/cli/verify-tdx.ts', help: 'verify an Intel TDX quote: --quote FILE [--collateral FILE ...] [--policy FILE] [--now ISO] [--json]' },
  'verify gpu': { module: 'client/cli/verify-gpu.ts', help: 'verify NVIDIA GPU CC evidence: --evidence FILE [--nonce HEX] [--rim FILE ...] [--policy FILE] [--json]' },
  'verify bundle': { module: 'client/cli/verify-bundle.ts', help: 'verify a saved evidence bundle offline: FILE [--policy FILE] [--json]' },
  verify: { module: 'client/cli/verify-url.ts', help: 'verify a live enclave: URL [--policy FILE] [--allow-sim] [--json]' },
  'measure snp': { module: 'client/cli/measure-snp.ts', help: 'SEV-SNP launch digest: --ovmf FILE --vcpus N --vcpu-type NAME [--kernel F --initrd F --append S] [--vmm qemu|ec2|gce] [--json]' },
  'measure tdx': { module: 'client/cli/measure-tdx.ts', help: 'TDX MRTD from TDVF and RTMRs replayed from a CCEL log, explained: [--tdvf F] [--ccel-log F] [--quote F] [--kernel F --cmdline S ...] [--json]' },
  'trust import': { module: 'client/cli/trust.ts', help: 'copy pinned vendor anchors from DIR into the trust directory (offline)' },
  'trust fetch': { module: 'client/cli/trust.ts', help: "download the vendors' anchors into the trust directory, checking the pins" },
  'trust list': { module: 'client/cli/trust.ts', help: 'list the pinned anchors and whether the trust directory holds them' },
  chat: { module: 'client/cli/chat.ts', help: 'send an encrypted chat request: --url URL [--model M] [--policy FILE] "prompt"' },
  enclave: { module: 'enclave/main.ts', help: 'run the enclave service (--tee auto|configfs|sim)' },
  worker: { module: 'worker/main.ts', help: 'run the GPU worker agent (--upstream URL --enclave URL)' },
  'dev-model': { module: 'worker/dev-model/main.ts', help: 'run a small deterministic OpenAI-compatible test server' },
  host: { module: 'host/main.ts', help: 'run the host shim (--enclave URL --listen ADDR)' },
  'receipts verify': { module: 'enclave/ledger/cli.ts', help: 'verify a receipt file or a whole ledger' },
  'receipts account': { module: 'enclave/ledger/account-cli.ts', help: 'ledger accounts: --ledger PATH create|deposit|pay-worker ...' },
  'receipts statement': { module: 'enclave/ledger/statement-cli.ts', help: 'account or worker statement: --ledger PATH (--account ID | --worker ID) [--json]' },
  demo: { module: 'client/cli/demo.ts', help: 'run the whole stack on loopback in sim mode and stream one encrypted answer' },
};

function usage(io: Io): number {
  io.err('usage: gm <command> [options]\n');
  for (const [name, c] of Object.entries(COMMANDS)) io.err(`  gm ${name.padEnd(16)} ${c.help}\n`);
  return 2;
}

export async function main(argv: string[], io: Io = nodeIo): Promise<number> {
  const two = argv.slice(0, 2).join(' ');
  const name = COMMANDS[two] ? two : COMMANDS[argv[0] ?? ''] ? argv[0]! : undefined;
  if (!name) return usage(io);
  const rest = argv.slice(name.split(' ').length);
  const url = new URL(`../../${COMMANDS[name]!.module}`, import.meta.url).href;
  let mod: CommandModule;
  try {
    mod = (await import(url)) as CommandModule;
  } catch (e) {
    io.err(`gm ${name}: not available in this build (${(e as Error).message})\n`);
    return 2;
  }
  try {
    return await mod.run(name.startsWith('trust ') ? [name.split(' ')[1]!, ...rest] : rest, io);
  } catch (e) {
    if (e instanceof GmError) {
      io.err(`gm ${name}: ${e.code}: ${e.message}\n`);
      return e.kind === 'config' ? 2 : 1;
    }
    throw e;
  }
}
