/**
 * GPU evidence for the worker (docs/design.md §1, §4): each report answers nonce = gpuNonceFor(CPU REPORT_DATA)
 * (docs/protocol.md §7), binding the GPU evidence to this worker's CPU evidence.
 * - sim: a fake NVIDIA chain generated at start signs SPDM GET_MEASUREMENTS transcripts (attestation/nvidia/sim.ts).
 * - command: the operator's collector (e.g. a wrapper around nvtrust / `nvattest`) run with the nonce; its stdout is
 *   the nvtrust JSON form `[{ arch, certificate: base64(PEM chain), evidence: base64(report), cc_mode }]`.
 * The worker refuses GPU evidence whose declared CC mode is not ON: this measured code is what makes the unsigned
 * CC-mode field trustworthy (the Hopper SPDM report carries none).
 */
import { spawn } from 'node:child_process';
import { CC_MODES, GPU_ARCHS, type GpuArch, type GpuCcMode, type GpuEvidence } from '../attestation/bundle.ts';
import { fromBase64, hex } from '../attestation/bytes.ts';
import { configError, rejected, unavailable } from '../attestation/errors.ts';
import { buildSimGpuReport, createNvidiaSimSigner, type NvidiaSimSigner, simGpuDevice } from '../attestation/nvidia/sim.ts';

const randomSerial = (): bigint => new DataView(crypto.getRandomValues(new Uint8Array(8)).buffer).getBigUint64(0) >> 1n;
import { pemDecodeAll } from '../attestation/x509/pem.ts';
import type { GpuEvidenceSource } from '../enclave/tee/evidence.ts';

export interface SimGpuOptions {
  /** Declared CC mode (tests: 'off' / 'devtools' must be refused by the enclave). */
  readonly ccMode?: GpuCcMode;
  /** Answer this nonce instead of the bound one (tests: a GPU report not bound to the CPU evidence). */
  readonly nonceOverride?: Uint8Array;
  readonly signer?: NvidiaSimSigner;
  /**
   * The sim GPU's device certificate serial (its UEID): default a random 63-bit value, so every sim source is its
   * own GPU. Tests give two workers one serial to present one GPU twice; `signer` uses the signer's own leaf.
   */
  readonly serial?: bigint | 'signer';
}

export function simGpuSource(o: SimGpuOptions = {}): GpuEvidenceSource {
  const base = o.signer ? Promise.resolve(o.signer) : createNvidiaSimSigner({ now: new Date() });
  const signer = o.serial === 'signer' ? base : base.then((s) => simGpuDevice(s, o.serial === undefined ? randomSerial() : (o.serial as bigint)));
  signer.catch(() => undefined);
  return async (nonce) => {
    const s = await signer;
    const evidence = await buildSimGpuReport(s, { nonce: o.nonceOverride ?? nonce });
    return [{ arch: 'HOPPER', evidence, certs: [s.leaf.der, s.intermediate.der, s.root.der], ccMode: o.ccMode ?? 'on' }];
  };
}

/** Parses the collector's nvtrust JSON into bundle entries (strict: unknown arch or CC mode is refused). */
export function gpuEvidenceFromNvtrustJson(text: string): GpuEvidence[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw configError('GPU_COLLECTOR_OUTPUT', 'GPU evidence collector did not print JSON', { cause: e });
  }
  if (!Array.isArray(doc) || doc.length === 0) throw configError('GPU_COLLECTOR_OUTPUT', 'GPU evidence collector must print a non-empty JSON array');
  return doc.map((x: unknown, i) => {
    const o = x as Record<string, unknown>;
    if (typeof o?.arch !== 'string' || typeof o.certificate !== 'string' || typeof o.evidence !== 'string')
      throw configError('GPU_COLLECTOR_OUTPUT', `GPU ${i}: arch, certificate and evidence must be strings`);
    const arch = o.arch.toUpperCase();
    if (!(GPU_ARCHS as readonly string[]).includes(arch)) throw configError('GPU_COLLECTOR_OUTPUT', `GPU ${i}: architecture ${o.arch} is not supported`);
    const cc = typeof o.cc_mode === 'string' ? o.cc_mode.toLowerCase() : undefined;
    if (!cc || !(CC_MODES as readonly string[]).includes(cc)) throw configError('GPU_COLLECTOR_OUTPUT', `GPU ${i}: cc_mode (ON, OFF or DEVTOOLS from NVML) is required`);
    if (cc !== 'on') throw rejected('GPU_CC_MODE_OFF', `GPU ${i}: confidential-computing mode is ${cc.toUpperCase()}; refusing to serve`);
    const pem = new TextDecoder().decode(fromBase64(o.certificate, `GPU ${i} certificate`));
    return { arch: arch as GpuArch, evidence: fromBase64(o.evidence, `GPU ${i} evidence`), certs: pemDecodeAll(pem), ccMode: cc as GpuCcMode };
  });
}

/** Runs `cmd` through /bin/sh with the nonce as $GM_GPU_NONCE (hex) and as the last argument. */
export function commandGpuSource(cmd: string, timeoutMs = 60_000): GpuEvidenceSource {
  return (nonce) =>
    new Promise((resolve, reject) => {
      const n = hex(nonce);
      const child = spawn('/bin/sh', ['-c', `${cmd} "$GM_GPU_NONCE"`], { env: { ...process.env, GM_GPU_NONCE: n }, stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      let size = 0;
      child.stdout.on('data', (b: Buffer) => {
        size += b.length;
        if (size > 16 * 1024 * 1024) child.kill('SIGKILL');
        else out.push(b);
      });
      child.stderr.resume();
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('error', (e) => {
        clearTimeout(t);
        reject(unavailable('GPU_COLLECTOR_FAILED', `cannot run the GPU evidence collector`, { cause: e }));
      });
      child.on('close', (code, sig) => {
        clearTimeout(t);
        if (code !== 0) return reject(unavailable('GPU_COLLECTOR_FAILED', `GPU evidence collector exited with ${code ?? sig}`));
        try {
          resolve(gpuEvidenceFromNvtrustJson(Buffer.concat(out).toString('utf8')));
        } catch (e) {
          reject(e);
        }
      });
    });
}
