/**
 * The reference GPU evidence collector for `gm worker --gpu-evidence-cmd` (deploy/worker/collect-gpu-evidence installs
 * it as /opt/gm/collect-gpu-evidence). The worker runs it with the nonce it derived from its CPU REPORT_DATA
 * (gpuNonceFor, docs/protocol.md §7) as the last argument and in $GM_GPU_NONCE; it prints the nvtrust JSON form the
 * worker reads (worker/gpu.ts): `[{ "arch", "certificate", "evidence", "cc_mode" }]`.
 *
 * 1. `nvattest collect-evidence --device gpu --nonce <hex> --format json` (NVIDIA attestation SDK CLI) asks every GPU
 *    for an SPDM GET_MEASUREMENTS report signed over the nonce; its JSON is `{ result_code, result_message,
 *    evidences: [{ arch, nonce, evidence, certificate }] }`, possibly with log lines around it.
 * 2. `nvidia-smi conf-compute -f` ("CC status: ON") and `nvidia-smi conf-compute -d` ("DevTools Mode: OFF") give the
 *    CC mode, which the Hopper report does not carry; the worker refuses anything but ON.
 * 3. Every report is parsed and must answer the nonce asked for: a collector never passes on evidence for another nonce.
 *
 * Any failure: a message on stderr, nothing on stdout, exit 1. Tool paths: $GM_NVATTEST, $GM_NVIDIA_SMI.
 */
import { spawnSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fromBase64, hex } from '../attestation/bytes.ts';
import { parseGpuAttestationReport } from '../attestation/nvidia/spdm.ts';

export type Run = (cmd: string, args: readonly string[]) => { status: number | null; stdout: string; stderr: string };

export interface CollectOptions {
  readonly nonce: string;
  readonly run: Run;
  readonly nvattest?: string;
  readonly nvidiaSmi?: string;
}

export class CollectorError extends Error {}

/** The first complete JSON object in `text` (nvattest may print log lines before and after it). */
function jsonObjectIn(text: string): unknown {
  for (let i = text.indexOf('{'); i >= 0; i = text.indexOf('{', i + 1)) {
    let depth = 0;
    let inString = false;
    for (let j = i; j < text.length; j++) {
      const c = text[j];
      if (inString) {
        if (c === '\\') j++;
        else if (c === '"') inString = false;
      } else if (c === '"') inString = true;
      else if (c === '{') depth++;
      else if (c === '}' && --depth === 0) {
        try {
          return JSON.parse(text.slice(i, j + 1));
        } catch {
          break;
        }
      }
    }
  }
  throw new CollectorError('nvattest printed no JSON object');
}

/** CC mode from nvidia-smi: ON, OFF or DEVTOOLS (DevTools mode on while CC is on). */
export function ccModeFrom(featureOut: string, devtoolsOut: string): 'ON' | 'OFF' | 'DEVTOOLS' {
  const cc = /CC status:\s*(ON|OFF)\b/i.exec(featureOut)?.[1]?.toUpperCase();
  if (!cc) throw new CollectorError(`cannot read the CC status from nvidia-smi conf-compute -f: ${JSON.stringify(featureOut.trim().slice(0, 200))}`);
  const dev = /DevTools Mode:\s*(ON|OFF)\b/i.exec(devtoolsOut)?.[1]?.toUpperCase();
  if (!dev) throw new CollectorError(`cannot read the DevTools mode from nvidia-smi conf-compute -d: ${JSON.stringify(devtoolsOut.trim().slice(0, 200))}`);
  if (cc === 'OFF') return 'OFF';
  return dev === 'ON' ? 'DEVTOOLS' : 'ON';
}

export function collectGpuEvidence(o: CollectOptions): string {
  const nonce = o.nonce.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(nonce)) throw new CollectorError('the nonce must be 32 bytes of hex (the worker passes it as the last argument and in $GM_GPU_NONCE)');
  const tool = (cmd: string, args: readonly string[]) => {
    const r = o.run(cmd, args);
    if (r.status !== 0) throw new CollectorError(`${cmd} ${args.join(' ')} exited with ${r.status}: ${r.stderr.trim().slice(0, 300)}`);
    return r.stdout;
  };
  const nvattest = o.nvattest ?? 'nvattest';
  const out = jsonObjectIn(tool(nvattest, ['collect-evidence', '--device', 'gpu', '--nonce', nonce, '--format', 'json'])) as Record<string, unknown>;
  if (out.result_code !== 0) throw new CollectorError(`nvattest result_code ${String(out.result_code)}: ${String(out.result_message)}`);
  const evidences = out.evidences;
  if (!Array.isArray(evidences) || evidences.length === 0) throw new CollectorError('nvattest returned no GPU evidence');
  const smi = o.nvidiaSmi ?? 'nvidia-smi';
  const ccMode = ccModeFrom(tool(smi, ['conf-compute', '-f']), tool(smi, ['conf-compute', '-d']));
  const items = evidences.map((e: unknown, i) => {
    const x = e as Record<string, unknown>;
    if (typeof x?.arch !== 'string' || typeof x.certificate !== 'string' || typeof x.evidence !== 'string')
      throw new CollectorError(`GPU ${i}: nvattest evidence lacks arch, certificate or evidence`);
    let answered: string;
    try {
      answered = hex(parseGpuAttestationReport(fromBase64(x.evidence, `GPU ${i} evidence`)).request.nonce);
    } catch (err) {
      throw new CollectorError(`GPU ${i}: the report does not parse: ${(err as Error).message}`);
    }
    if (answered !== nonce) throw new CollectorError(`GPU ${i}: the report answers nonce ${answered}, not ${nonce}`);
    return { arch: x.arch.toUpperCase(), certificate: x.certificate, evidence: x.evidence, cc_mode: ccMode };
  });
  return `${JSON.stringify(items)}\n`;
}

const nodeRun: Run = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) return { status: null, stdout: '', stderr: r.error.message };
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};

// Run as a program (not when a test imports it). import.meta.main needs Node ≥ 22.18; gm supports 22.12.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const nonce = process.argv.at(-1) && process.argv.length > 2 ? process.argv.at(-1)! : (process.env.GM_GPU_NONCE ?? '');
    process.stdout.write(collectGpuEvidence({ nonce, run: nodeRun, nvattest: process.env.GM_NVATTEST, nvidiaSmi: process.env.GM_NVIDIA_SMI }));
  } catch (e) {
    process.stderr.write(`collect-gpu-evidence: ${(e as Error).message}\n`);
    process.exitCode = 1;
  }
}
