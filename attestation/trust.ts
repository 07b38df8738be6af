/**
 * Pinned vendor trust anchors (docs/design.md §3 "Trust anchors"). The code holds only SHA-256 fingerprints of the DER
 * encodings; the certificates come from a trust directory (GM_TRUST_DIR) laid out as `<vendor>/<file>` like the
 * repository's trust/ folder, whose copies are there to import and test with. Every certificate read must match the
 * pin for its file and position, or it is refused.
 *
 * Runtime-agnostic: the caller hands in a file reader (Node passes `node:fs/promises`, a browser a fetch wrapper).
 */
import { hex, sha256 } from './bytes.ts';
import { configError } from './errors.ts';
import { type Certificate, parseCertificate } from './x509/cert.ts';
import { certificatesFrom } from './x509/pem.ts';

export type AmdProduct = 'Milan' | 'Genoa' | 'Turin';
export type AnchorRole = 'amd-ark' | 'amd-ask' | 'amd-asvk' | 'intel-sgx-root' | 'nvidia-device-root' | 'nvidia-rim-root';

export interface AnchorPin {
  readonly role: AnchorRole;
  readonly product?: AmdProduct;
  /** SHA-256 of the DER, upper-case hex as the vendors' tables print it. */
  readonly sha256: string;
  readonly name: string;
}

export interface AnchorFile {
  /** Path relative to the trust directory. */
  readonly path: string;
  /** Pins of the certificates in the file, leaf-most first, in file order. */
  readonly pins: readonly AnchorPin[];
  /** Where the vendor publishes this file (for `gm trust fetch`), relative to the vendor's base URL. */
  readonly source: { readonly vendor: 'amd' | 'intel' | 'nvidia'; readonly path: string };
}

const ARK = {
  Milan: '69D063B45344D26A2E94E1F4210DE49EF555308287D4C174445C95639A540BCD',
  Genoa: '4C6598D19C18719C5DFD4A7D335F674E5BFE1D8F800CEA2CF270C10D103DB2F1',
  Turin: '1F084161A44BB6D93778A904877D4819CAFA5D05EF4193B2DED9DD9C73DD3F6A',
} as const;

const ark = (product: AmdProduct): AnchorPin => ({ role: 'amd-ark', product, sha256: ARK[product], name: `ARK-${product}` });

/** The pin table (trust/README.md lists the same fingerprints). Changing a pin is a reviewed code change, never configuration. */
export const ANCHOR_FILES: readonly AnchorFile[] = [
  { path: 'amd/ask_ark_milan.pem', source: { vendor: 'amd', path: '/vcek/v1/Milan/cert_chain' },
    pins: [{ role: 'amd-ask', product: 'Milan', sha256: '67D303BD3905FD38DB8B20E0793699870E7FA612EAAD5DEC358293FD8C0BAC1B', name: 'SEV-Milan' }, ark('Milan')] },
  { path: 'amd/ask_ark_genoa.pem', source: { vendor: 'amd', path: '/vcek/v1/Genoa/cert_chain' },
    pins: [{ role: 'amd-ask', product: 'Genoa', sha256: '5464738C1546AED5F2CECF1DC98C5C960A92E8913238A61711BC90EC6E828521', name: 'SEV-Genoa' }, ark('Genoa')] },
  { path: 'amd/ask_ark_turin_vcek.pem', source: { vendor: 'amd', path: '/vcek/v1/Turin/cert_chain' },
    pins: [{ role: 'amd-ask', product: 'Turin', sha256: '5B77EF5FE7A7A004FD9032668FBA9D0FDA22F88C4442069A479636A6AE3B3185', name: 'SEV-Turin' }, ark('Turin')] },
  { path: 'amd/ask_ark_milan_vlek.pem', source: { vendor: 'amd', path: '/vlek/v1/Milan/cert_chain' },
    pins: [{ role: 'amd-asvk', product: 'Milan', sha256: 'C5E081F59B7EFAB1FE2F8B505E159704E72F29CAB7EF7CF628A05A42439082F5', name: 'SEV-VLEK-Milan' }, ark('Milan')] },
  { path: 'amd/ask_ark_genoa_vlek.pem', source: { vendor: 'amd', path: '/vlek/v1/Genoa/cert_chain' },
    pins: [{ role: 'amd-asvk', product: 'Genoa', sha256: '197E610743A917D6B9BB982A5A9226CCC0A15B611BE0619E626ACA9151457372', name: 'SEV-VLEK-Genoa' }, ark('Genoa')] },
  { path: 'amd/ask_ark_turin_vlek.pem', source: { vendor: 'amd', path: '/vlek/v1/Turin/cert_chain' },
    pins: [{ role: 'amd-asvk', product: 'Turin', sha256: '104E10A8BD060A3C20A434261A57D0588FD65A88915B4F65B08BDECAF8DF1A3C', name: 'SEV-VLEK-Turin' }, ark('Turin')] },
  { path: 'intel/sgx_root_ca.pem', source: { vendor: 'intel', path: '/Intel_SGX_Provisioning_Certification_RootCA.pem' },
    pins: [{ role: 'intel-sgx-root', sha256: '44A0196B2B99F889B8E149E95B807A350E7424964399E885A7CBB8CCFAB674D3', name: 'Intel SGX Root CA' }] },
  { path: 'nvidia/device_root.pem', source: { vendor: 'nvidia', path: '/device_root.pem' },
    pins: [{ role: 'nvidia-device-root', sha256: '102BF659D5419614C9D8E6AECEBC80454EB26B1DF6A769AC720B9A690B167B48', name: 'NVIDIA Device Identity CA' }] },
  { path: 'nvidia/rim_root.pem', source: { vendor: 'nvidia', path: '/rim_root.pem' },
    pins: [{ role: 'nvidia-rim-root', sha256: '12977B5115ACB0381179279FFFEB5A8C4D264971EBB32298023A465FA41DF5D1', name: 'NVIDIA CoRIM signing Root CA' }] },
];

export interface PinnedCertificate {
  readonly pin: AnchorPin;
  readonly cert: Certificate;
  readonly file: string;
}

/** Certificates that matched their pins. Lookups throw a configuration error naming the missing file. */
export class TrustStore {
  readonly #byKey = new Map<string, PinnedCertificate>();
  /** Files that were absent from the trust directory. */
  readonly missing: readonly string[];

  constructor(entries: readonly PinnedCertificate[], missing: readonly string[] = []) {
    for (const e of entries) this.#byKey.set(key(e.pin.role, e.pin.product), e);
    this.missing = missing;
  }

  get entries(): readonly PinnedCertificate[] {
    return [...this.#byKey.values()];
  }

  get(role: AnchorRole, product?: AmdProduct): Certificate {
    const e = this.#byKey.get(key(role, product));
    if (!e) {
      const file = ANCHOR_FILES.find((f) => f.pins.some((p) => p.role === role && p.product === product))?.path ?? role;
      throw configError('TRUST_ANCHOR_MISSING', `trust anchor ${role}${product ? ` (${product})` : ''} is not in the trust directory (expected ${file}); run \`gm trust import DIR\` or \`gm trust fetch\``);
    }
    return e.cert;
  }

  has(role: AnchorRole, product?: AmdProduct): boolean {
    return this.#byKey.has(key(role, product));
  }
}

const key = (role: AnchorRole, product?: AmdProduct) => `${role}/${product ?? ''}`;

/**
 * Checks `bytes` (PEM or DER) against the pins of `file`: the count must match and each certificate's SHA-256
 * must equal its pin. Throws TRUST_PIN_MISMATCH otherwise.
 */
export async function checkAnchorFile(file: AnchorFile, bytes: Uint8Array): Promise<PinnedCertificate[]> {
  let ders: Uint8Array[];
  try {
    ders = certificatesFrom(bytes);
  } catch (e) {
    throw configError('TRUST_PIN_MISMATCH', `${file.path}: not a certificate file`, { cause: e });
  }
  if (ders.length !== file.pins.length)
    throw configError('TRUST_PIN_MISMATCH', `${file.path}: holds ${ders.length} certificate(s), the pin table expects ${file.pins.length}`);
  const out: PinnedCertificate[] = [];
  for (let i = 0; i < ders.length; i++) {
    const pin = file.pins[i]!;
    const got = hex(await sha256(ders[i]!)).toUpperCase();
    if (got !== pin.sha256)
      throw configError('TRUST_PIN_MISMATCH', `${file.path}: certificate ${i + 1} has SHA-256 ${got}, pinned ${pin.name} is ${pin.sha256}; refusing it`);
    out.push({ pin, cert: parseCertificate(ders[i]!), file: file.path });
  }
  return out;
}

/** Minimal file reader: `node:fs/promises` satisfies it. */
export interface TrustDirReader {
  readFile(path: string): Promise<Uint8Array>;
}

/**
 * Loads every pinned file present under `dir`. A file that exists but fails its pin is an error (never skipped);
 * an absent file is recorded in `missing` and surfaces only when a verifier needs that anchor.
 */
export async function loadTrustStore(dir: string, fs: TrustDirReader): Promise<TrustStore> {
  const entries: PinnedCertificate[] = [];
  const missing: string[] = [];
  for (const file of ANCHOR_FILES) {
    let bytes: Uint8Array;
    try {
      bytes = await fs.readFile(`${dir.replace(/\/+$/, '')}/${file.path}`);
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') {
        missing.push(file.path);
        continue;
      }
      throw configError('TRUST_DIR_UNREADABLE', `cannot read ${file.path} in trust directory ${dir}`, { cause: e });
    }
    entries.push(...(await checkAnchorFile(file, bytes)));
  }
  return new TrustStore(entries, missing);
}

/**
 * The trust directory as every gm command and service reads it: the store of the pinned anchors it holds, or
 * undefined when it holds none (absent or empty; a verifier then refuses real evidence itself). A broken directory is
 * never taken for an empty one: a certificate that fails its pin is TRUST_PIN_MISMATCH, a file that cannot be read
 * TRUST_DIR_UNREADABLE. With `requiredBy` (who needs the anchors, and for what), a directory holding none is
 * TRUST_ANCHOR_MISSING, naming it and how to fill it.
 */
export async function trustFromDir(dir: string, fs: TrustDirReader, o: { readonly requiredBy?: string } = {}): Promise<TrustStore | undefined> {
  const store = await loadTrustStore(dir, fs);
  if (store.entries.length > 0) return store;
  if (o.requiredBy !== undefined) throw configError('TRUST_ANCHOR_MISSING', `${o.requiredBy}, and the trust directory ${dir} holds none: run \`gm trust import DIR\` or \`gm trust fetch\``);
  return undefined;
}

/** The trust directory: `GM_TRUST_DIR`, else `$XDG_CONFIG_HOME/gm/trust`, else `~/.config/gm/trust`. */
export function trustDirFrom(env: Readonly<Record<string, string | undefined>>, home: string): string {
  if (env.GM_TRUST_DIR) return env.GM_TRUST_DIR;
  return `${env.XDG_CONFIG_HOME || `${home}/.config`}/gm/trust`;
}
