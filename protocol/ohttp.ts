/**
 * Oblivious HTTP, RFC 9458: key configurations (§3.1) and the application/ohttp-keys list (§3.2), request
 * encapsulation (§4.3, `message/ohttp-req`) and response encapsulation (§4.4, `message/ohttp-res`), with the error
 * handling of §5.2 and §6.
 *
 * Error codes (docs/protocol.md §8): OHTTP_BAD_KEY_CONFIG (a key configuration does not parse), OHTTP_MALFORMED (an
 * encapsulated message is too short to hold its header), OHTTP_UNKNOWN_KEY_ID and OHTTP_UNSUPPORTED_SUITE (the key
 * configuration the client used is not the gateway's: re-fetch it, i.e. re-attest), OHTTP_DECRYPT_FAILED (any failure to
 * open; deliberately one code), OHTTP_REPLAY (the encapsulated key was seen before).
 */
import { protocolError } from '../attestation/errors.ts';
import {
  AEAD_AES_128_GCM,
  AEAD_CHACHA20_POLY1305,
  AEAD_EXPORT_ONLY,
  KDF_HKDF_SHA256,
  KEM_MLKEM768_X25519,
  KEM_PARAMS,
  KEM_X25519_HKDF_SHA256,
  generateKemKeyPair,
  hkdfExpand,
  hkdfExtract,
  importKemPrivateKey,
  isSupportedSuite,
  labelBytes,
  setupBaseR,
  setupBaseS,
  type CryptoBackend,
  type KeyPair,
  type PreparedEncap,
  type ReceiverContext,
  type SenderContext,
  type SuiteIds,
} from './hpke.ts';
import { AEAD_PARAMS, defaultBackend } from './backend.ts';
import { LABEL_REQUEST, LABEL_RESPONSE } from './media.ts';
import { publicRandomBytes } from './random-pool.ts';
import type { ReplayCache } from './replay.ts';

export interface SymmetricAlgorithm {
  readonly kdfId: number;
  readonly aeadId: number;
}

/** A key configuration (RFC 9458 §3.1). */
export interface KeyConfig {
  /** Key Identifier (8 bits). */
  readonly keyId: number;
  readonly kemId: number;
  /** HPKE Public Key (Npk bytes). */
  readonly publicKey: Uint8Array;
  /** HPKE Symmetric Algorithms, in the gateway's order of preference. */
  readonly symmetric: readonly SymmetricAlgorithm[];
}

/** A key configuration with its private key, held by a gateway only. The private key is never serialized. */
export interface GatewayKey {
  readonly config: KeyConfig;
  readonly privateKey: KeyPair;
}

/** What gm's gateways offer (docs/design.md §4): HKDF-SHA256 with AES-128-GCM, then ChaCha20-Poly1305. */
export const DEFAULT_SYMMETRIC: readonly SymmetricAlgorithm[] = [
  { kdfId: KDF_HKDF_SHA256, aeadId: AEAD_AES_128_GCM },
  { kdfId: KDF_HKDF_SHA256, aeadId: AEAD_CHACHA20_POLY1305 },
];

/** Npk per KEM; a KEM not listed in hpke.ts KEM_PARAMS cannot be parsed (its key length is unknown). */
const npkOf = (kemId: number): number | undefined => KEM_PARAMS[kemId]?.Npk;


function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

function badConfig(msg: string): never {
  throw protocolError('OHTTP_BAD_KEY_CONFIG', msg);
}

/** Encodes one key configuration (RFC 9458 §3.1). */
export function encodeKeyConfig(c: KeyConfig): Uint8Array {
  const npk = npkOf(c.kemId);
  if (npk === undefined) badConfig(`KEM 0x${c.kemId.toString(16)} is not supported`);
  if (c.publicKey.length !== npk) badConfig('public key has the wrong length for its KEM');
  if (!Number.isInteger(c.keyId) || c.keyId < 0 || c.keyId > 255) badConfig('key id must be 0..255');
  if (c.symmetric.length === 0 || c.symmetric.length > 16383) badConfig('a key configuration lists 1..16383 symmetric algorithms');
  const out = new Uint8Array(1 + 2 + npk + 2 + 4 * c.symmetric.length);
  out[0] = c.keyId;
  out[1] = c.kemId >> 8;
  out[2] = c.kemId & 0xff;
  out.set(c.publicKey, 3);
  let o = 3 + npk;
  const n = 4 * c.symmetric.length;
  out[o++] = n >> 8;
  out[o++] = n & 0xff;
  for (const s of c.symmetric) {
    out[o++] = s.kdfId >> 8;
    out[o++] = s.kdfId & 0xff;
    out[o++] = s.aeadId >> 8;
    out[o++] = s.aeadId & 0xff;
  }
  return out;
}

/**
 * Decodes exactly one key configuration (no trailing bytes). An unknown KEM throws OHTTP_UNSUPPORTED_KEM (its Npk is
 * unknown, so the rest cannot be parsed). Unknown KDF/AEAD ids are kept as listed: a client picks a pair it supports.
 */
export function decodeKeyConfig(b: Uint8Array): KeyConfig {
  if (b.length < 3) badConfig('key configuration truncated');
  const keyId = b[0]!;
  const kemId = u16(b, 1);
  const npk = npkOf(kemId);
  if (npk === undefined) throw protocolError('OHTTP_UNSUPPORTED_KEM', `KEM 0x${kemId.toString(16).padStart(4, '0')} is not supported`);
  if (b.length < 3 + npk + 2) badConfig('key configuration truncated');
  const publicKey = b.slice(3, 3 + npk);
  const n = u16(b, 3 + npk);
  if (n < 4 || n % 4 !== 0) badConfig('symmetric algorithms length must be a positive multiple of 4');
  const start = 5 + npk;
  if (start + n !== b.length) badConfig(start + n > b.length ? 'key configuration truncated' : 'trailing bytes after the key configuration');
  const symmetric: SymmetricAlgorithm[] = [];
  for (let o = start; o < start + n; o += 4) symmetric.push({ kdfId: u16(b, o), aeadId: u16(b, o + 2) });
  return { keyId, kemId, publicKey, symmetric };
}

/** Encodes application/ohttp-keys: each configuration prefixed by its 2-byte length (RFC 9458 §3.2). */
export function encodeKeyConfigs(cs: readonly KeyConfig[]): Uint8Array {
  const parts = cs.map(encodeKeyConfig);
  const out = new Uint8Array(parts.reduce((n, p) => n + 2 + p.length, 0));
  let o = 0;
  for (const p of parts) {
    if (p.length > 0xffff) badConfig('key configuration too long');
    out[o] = p.length >> 8;
    out[o + 1] = p.length & 0xff;
    out.set(p, o + 2);
    o += 2 + p.length;
  }
  return out;
}

/**
 * Decodes application/ohttp-keys. Per RFC 9458 §3.2 a configuration with an unsupported KEM is skipped (its length
 * prefix lets us step over it); every length is checked and nothing may trail. An empty or all-unsupported list throws
 * OHTTP_BAD_KEY_CONFIG, since a client could not use it.
 */
export function decodeKeyConfigs(b: Uint8Array): KeyConfig[] {
  const out: KeyConfig[] = [];
  let o = 0;
  while (o < b.length) {
    if (o + 2 > b.length) badConfig('key configuration list truncated');
    const n = u16(b, o);
    if (n === 0 || o + 2 + n > b.length) badConfig('key configuration list truncated');
    try {
      out.push(decodeKeyConfig(b.subarray(o + 2, o + 2 + n)));
    } catch (e) {
      if (!(e instanceof Error && (e as { code?: string }).code === 'OHTTP_UNSUPPORTED_KEM')) throw e;
    }
    o += 2 + n;
  }
  if (out.length === 0) badConfig('no usable key configuration');
  return out;
}

export interface KeyConfigOptions {
  readonly backend?: CryptoBackend;
  /** The configuration's KEM: KEM_X25519_HKDF_SHA256 (the default) or KEM_MLKEM768_X25519 (X-Wing). */
  readonly kemId?: number;
}

/** Generates a fresh key configuration; the private key stays in memory (docs/design.md §4). */
export async function generateKeyConfig(keyId: number, symmetric: readonly SymmetricAlgorithm[] = DEFAULT_SYMMETRIC, o: KeyConfigOptions = {}): Promise<GatewayKey> {
  const kemId = o.kemId ?? KEM_X25519_HKDF_SHA256;
  const privateKey = await generateKemKeyPair(kemId, o.backend ?? defaultBackend());
  const config: KeyConfig = { keyId, kemId, publicKey: privateKey.publicKey, symmetric };
  encodeKeyConfig(config); // validates
  return { config, privateKey };
}

/** A gateway key from a known private key: an X25519 scalar or an X-Wing seed (tests, RFC 9458 Appendix A). */
export async function gatewayKeyFromPrivateKey(keyId: number, sk: Uint8Array, symmetric: readonly SymmetricAlgorithm[] = DEFAULT_SYMMETRIC, o: KeyConfigOptions = {}): Promise<GatewayKey> {
  const kemId = o.kemId ?? KEM_X25519_HKDF_SHA256;
  const privateKey = await importKemPrivateKey(kemId, sk, o.backend ?? defaultBackend());
  const config: KeyConfig = { keyId, kemId, publicKey: privateKey.publicKey, symmetric };
  encodeKeyConfig(config);
  return { config, privateKey };
}

/** The 7-byte header `hdr` = key_id, kem_id, kdf_id, aead_id (RFC 9458 §4.3). */
export function requestHeader(keyId: number, s: SuiteIds): Uint8Array {
  return Uint8Array.of(keyId, s.kemId >> 8, s.kemId & 0xff, s.kdfId >> 8, s.kdfId & 0xff, s.aeadId >> 8, s.aeadId & 0xff);
}

/** info = label || 0x00 || hdr (RFC 9458 §4.3; the chunked draft uses its own label). */
export function requestInfo(label: string, hdr: Uint8Array): Uint8Array {
  const l = labelBytes(label);
  const out = new Uint8Array(l.length + 1 + hdr.length);
  out.set(l);
  out.set(hdr, l.length + 1);
  return out;
}

/** Picks the suite a client uses with `config`: the requested pair if listed, else the gateway's first supported pair. */
export function selectSuite(config: KeyConfig, want?: SymmetricAlgorithm): SuiteIds {
  const usable = (s: SymmetricAlgorithm) =>
    s.aeadId !== AEAD_EXPORT_ONLY && isSupportedSuite({ kemId: config.kemId, kdfId: s.kdfId, aeadId: s.aeadId });
  const pick = want
    ? config.symmetric.find((s) => s.kdfId === want.kdfId && s.aeadId === want.aeadId && usable(s))
    : config.symmetric.find(usable);
  if (!pick) throw protocolError('OHTTP_UNSUPPORTED_SUITE', 'no supported HPKE suite in the key configuration');
  return { kemId: config.kemId, kdfId: pick.kdfId, aeadId: pick.aeadId };
}

/** KEMs in the order a client prefers them: the hybrid post-quantum X-Wing, then DHKEM(X25519). */
export const KEM_PREFERENCE: readonly number[] = [KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256];

/** True for a KEM that resists a quantum adversary recording traffic today ("harvest now, decrypt later"). */
export function isPostQuantumKem(kemId: number): boolean {
  return kemId === KEM_MLKEM768_X25519;
}

function usable(c: KeyConfig): boolean {
  try {
    selectSuite(c);
    return true;
  } catch {
    return false;
  }
}

/**
 * Picks the configuration a client seals to from an attested list: the first usable configuration of the most
 * preferred KEM (KEM_PREFERENCE), so X-Wing whenever the list has one; X25519 only when it has none. Only members of
 * `configs` are candidates: a list shortened on the way (a relay stripping the hybrid configuration) cannot steer the
 * choice unless it is the list that was attested, which REPORT_DATA prevents (docs/protocol.md §7). A caller that
 * requires a post-quantum KEM checks `isPostQuantumKem` of the result: it is false only if the list has no usable one.
 */
export function chooseKeyConfig(configs: readonly KeyConfig[]): KeyConfig {
  for (const kemId of KEM_PREFERENCE) {
    const c = configs.find((x) => x.kemId === kemId && usable(x));
    if (c) return c;
  }
  throw protocolError('OHTTP_UNSUPPORTED_SUITE', 'no attested key configuration has a suite this client supports');
}

export interface EncapsulateOptions {
  /** KDF/AEAD pair to use (must be listed in the config); default: the config's first supported pair. */
  readonly suite?: SymmetricAlgorithm;
  readonly backend?: CryptoBackend;
  /** TEST-ONLY: fixed ephemeral key (RFC 9458 Appendix A); see hpke.ts SetupOptions. */
  readonly ephemeralKeyPair?: KeyPair;
  /** TEST-ONLY: X-Wing encapsulation randomness; see hpke.ts SetupOptions. */
  readonly encapRandomness?: Uint8Array;
  /** Encap(pkR) made ahead for this configuration's key (hpke.ts `prepareEncap`), taken once. */
  readonly prepared?: PreparedEncap;
}

/** Client side: opens the encapsulated response that answers the request. */
export interface ClientResponseContext {
  readonly suite: SuiteIds;
  /** Decapsulates a `message/ohttp-res`; any failure throws OHTTP_DECRYPT_FAILED. Single use. */
  openResponse(encapsulatedResponse: Uint8Array): Promise<Uint8Array>;
  /** The HPKE context and `enc`, for the chunked response variant (chunked.ts). */
  readonly hpke: SenderContext;
  readonly enc: Uint8Array;
}

/** Gateway side: seals the response to the request it decapsulated. */
export interface GatewayResponseContext {
  readonly suite: SuiteIds;
  readonly keyId: number;
  /** Encapsulates a `message/ohttp-res`. Single use. `responseNonce` is TEST-ONLY (RFC 9458 Appendix A). */
  sealResponse(response: Uint8Array, o?: { responseNonce?: Uint8Array }): Promise<Uint8Array>;
  readonly hpke: ReceiverContext;
  readonly enc: Uint8Array;
}

const saltScratch = new Uint8Array(2048);

/** Response keys (RFC 9458 §4.4): secret = Export(label, max(Nn, Nk)); prk = Extract(enc || response_nonce, secret). */
export function responseKeys(
  ctx: SenderContext | ReceiverContext,
  encv: Uint8Array,
  label: string,
  responseNonce: Uint8Array,
  backend: CryptoBackend,
): { key: Uint8Array; nonce: Uint8Array } {
  const p = AEAD_PARAMS[ctx.suite.aeadId]!;
  const secret = ctx.export(labelBytes(label), Math.max(p.Nn, p.Nk));
  // salt = enc || response_nonce, public bytes, built in a reused buffer (an X-Wing enc alone is 1120 bytes).
  const n = encv.length + responseNonce.length;
  const salt = n > saltScratch.length ? new Uint8Array(n) : saltScratch;
  salt.set(encv);
  salt.set(responseNonce, encv.length);
  const prk = hkdfExtract(salt.subarray(0, n), secret, backend);
  return { key: hkdfExpand(prk, labelBytes('key'), p.Nk, backend), nonce: hkdfExpand(prk, labelBytes('nonce'), p.Nn, backend) };
}

/** Length of the response nonce, max(Nn, Nk) (RFC 9458 §4.4). */
export function responseNonceLength(s: SuiteIds): number {
  const p = AEAD_PARAMS[s.aeadId]!;
  return Math.max(p.Nn, p.Nk);
}

const EMPTY = new Uint8Array(0);

function decryptFailed(cause?: unknown): never {
  throw protocolError('OHTTP_DECRYPT_FAILED', 'could not decrypt the message', cause === undefined ? undefined : { cause });
}

function once(used: { v: boolean }, what: string): void {
  if (used.v) throw protocolError('OHTTP_CONTEXT_USED', `${what} may be used only once`);
  used.v = true;
}

/** Client: encapsulates a binary HTTP request to `config` (RFC 9458 §4.3). */
export async function encapsulateRequest(
  config: KeyConfig,
  request: Uint8Array,
  o: EncapsulateOptions = {},
): Promise<{ encapsulated: Uint8Array; context: ClientResponseContext }> {
  const b = o.backend ?? defaultBackend();
  const suite = selectSuite(config, o.suite);
  const hdr = requestHeader(config.keyId, suite);
  const { enc: encv, context: sctxt } = await setupBaseS(suite, config.publicKey, requestInfo(LABEL_REQUEST, hdr), {
    backend: b,
    ...(o.ephemeralKeyPair ? { ephemeralKeyPair: o.ephemeralKeyPair } : {}),
    ...(o.encapRandomness ? { encapRandomness: o.encapRandomness } : {}),
    ...(o.prepared ? { prepared: o.prepared } : {}),
  });
  // hdr || enc || ct: the AEAD leaves room for the header and `enc` in front of its output, written in place.
  const encapsulated = await sctxt.seal(EMPTY, request, hdr.length + encv.length);
  encapsulated.set(hdr);
  encapsulated.set(encv, hdr.length);
  const used = { v: false };
  const nlen = responseNonceLength(suite);
  const p = AEAD_PARAMS[suite.aeadId]!;
  return {
    encapsulated,
    context: {
      suite,
      hpke: sctxt,
      enc: encv,
      async openResponse(r: Uint8Array): Promise<Uint8Array> {
        once(used, 'a response context');
        if (r.length < nlen + p.Nt) decryptFailed();
        const { key, nonce } = responseKeys(sctxt, encv, LABEL_RESPONSE, r.subarray(0, nlen), b);
        try {
          return await (await b.aead(suite.aeadId, key)).open(nonce, EMPTY, r.subarray(nlen));
        } catch (e) {
          decryptFailed(e);
        }
      },
    },
  };
}

/** Parsed request header: the key it names and the suite (RFC 9458 §4.3); `rest` starts at `enc`. */
export interface ParsedRequestHeader {
  readonly key: GatewayKey;
  readonly suite: SuiteIds;
  readonly hdr: Uint8Array;
  readonly enc: Uint8Array;
  readonly rest: Uint8Array;
}

/** Looks up the key and checks the suite against its configuration (RFC 9458 §4.3, §6.2 steps 1-2). */
export function parseRequestHeader(keys: readonly GatewayKey[], b: Uint8Array): ParsedRequestHeader {
  if (b.length < 7) throw protocolError('OHTTP_MALFORMED', 'encapsulated request shorter than its header');
  const keyId = b[0]!;
  const key = keys.find((k) => k.config.keyId === keyId);
  if (!key) throw protocolError('OHTTP_UNKNOWN_KEY_ID', `unknown key identifier ${keyId}`);
  const suite: SuiteIds = { kemId: u16(b, 1), kdfId: u16(b, 3), aeadId: u16(b, 5) };
  const listed = key.config.symmetric.some((s) => s.kdfId === suite.kdfId && s.aeadId === suite.aeadId);
  if (suite.kemId !== key.config.kemId || !listed || suite.aeadId === AEAD_EXPORT_ONLY || !isSupportedSuite(suite)) {
    throw protocolError('OHTTP_UNSUPPORTED_SUITE', 'the request uses a suite its key configuration does not offer');
  }
  const nenc = KEM_PARAMS[suite.kemId]!.Nenc;
  if (b.length < 7 + nenc) throw protocolError('OHTTP_MALFORMED', 'encapsulated request shorter than its header');
  return { key, suite, hdr: b.subarray(0, 7), enc: b.slice(7, 7 + nenc), rest: b.subarray(7 + nenc) };
}

export interface DecapsulateOptions {
  /** Rejects a re-used encapsulated key (docs/design.md §5); checked after the request authenticated. */
  readonly replay?: ReplayCache;
  readonly backend?: CryptoBackend;
}

/** Gateway: decapsulates a `message/ohttp-req` with one of `keys` (RFC 9458 §4.3). */
export async function decapsulateRequest(
  keys: readonly GatewayKey[],
  encapsulated: Uint8Array,
  o: DecapsulateOptions = {},
): Promise<{ request: Uint8Array; context: GatewayResponseContext }> {
  const b = o.backend ?? defaultBackend();
  const h = parseRequestHeader(keys, encapsulated);
  let rctxt: ReceiverContext;
  let request: Uint8Array;
  try {
    rctxt = await setupBaseR(h.suite, h.enc, h.key.privateKey, requestInfo(LABEL_REQUEST, h.hdr), { backend: b });
    request = await rctxt.open(EMPTY, h.rest);
  } catch (e) {
    decryptFailed(e);
  }
  o.replay?.check(h.key.config.keyId, h.enc);
  const used = { v: false };
  const suite = h.suite;
  return {
    request,
    context: {
      suite,
      keyId: h.key.config.keyId,
      hpke: rctxt,
      enc: h.enc,
      async sealResponse(response: Uint8Array, so: { responseNonce?: Uint8Array } = {}): Promise<Uint8Array> {
        once(used, 'a response context');
        const nlen = responseNonceLength(suite);
        const rn = so.responseNonce ?? publicRandomBytes(nlen);
        if (rn.length !== nlen) throw protocolError('OHTTP_BAD_NONCE', 'response nonce has the wrong length');
        const { key, nonce } = responseKeys(rctxt, h.enc, LABEL_RESPONSE, rn, b);
        // The AEAD leaves room for the response nonce in front of its output: the message is written in place.
        const out = await (await b.aead(suite.aeadId, key)).seal(nonce, EMPTY, response, nlen);
        out.set(rn);
        return out;
      },
    },
  };
}
