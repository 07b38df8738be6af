/**
 * Protocol benchmarks. Each figure is printed beside a node:crypto floor measured in the same run:
 * 1. decapsulate + open a 1 KiB OHTTP request vs one X25519 agreement + HKDF + AES-128-GCM open (ratio <= 1.5);
 * 2. open a chunked response of 16 KiB chunks vs raw AES-128-GCM over the same chunks (throughput ratio >= 0.7);
 * 3. seal one 64-byte chunk (one SSE token; the enclave's side) and open one (the client's side): each <= 5 us per
 *    chunk, beside the raw AES-128-GCM seal and open; their sum is printed as well;
 * 4. X-Wing (MLKEM768-X25519): decapsulate + open a 1 KiB request vs ML-KEM-768 decapsulate + X25519 + HKDF +
 *    AES-128-GCM open (ratio <= 1.5); the enclave's whole client leg (decapsulate, open, seal a 1 KiB response) vs
 *    the bare ML-KEM-768 decapsulation and X25519 import and agreement (informational); and encapsulate + seal one (the client) vs ML-KEM-768 encapsulate + X25519
 *    generate and agreement + HKDF + AES-128-GCM seal (ratio <= 1.5); the ML-KEM floor is the implementation each
 *    backend uses: node:crypto's for the node backend, @noble/post-quantum's (prepared key) for the WebCrypto one;
 * 5. one non-streaming 1 KiB chat request through the whole stack (SDK, enclave, worker, dev-model, over sockets)
 *    with X-Wing on both hops vs the same stack with X25519 only (ratio <= 1.3);
 * 6. one 64-byte record sealed on the enclave → worker session (protocol/session.ts, the worker's per-token cost),
 *    <= 5 us, beside a bare node:crypto AES-128-GCM seal of the same bytes with an AAD of the record's length;
 * 7. the stream commitment per 64-byte chunk (protocol/stream-chain.ts): the enclave's (node:crypto createHash) and the
 *    client SDK's (@noble/hashes), each <= 1 us per chunk, beside a bare one-shot SHA-256 of the chunk;
 * 8. the client opening a 1 KiB X-Wing response (RFC 9458 §4.4: Export, HKDF, AES-128-GCM open) beside the bare
 *    AES-128-GCM open of the same bytes (informational); and with GM_BENCH_BASELINE=<another checkout of gm>, the
 *    client leg's three per-request figures (the enclave's decapsulate + open + seal, the client's encapsulate + seal,
 *    the client's response open) timed with that tree's protocol modules alternately with this tree's, in the same
 *    rounds, as this ÷ that: a before/after comparison that load from other processes hits alike.
 * The targets apply to the node:crypto backend the enclave and workers install (protocol/node/backend-node.ts); the
 * runtime-agnostic WebCrypto backend (browsers, the client SDK) is measured too and reported without a target.
 */
import { createCipheriv, createDecipheriv, createHash, createPublicKey, createSecretKey, decapsulate, diffieHellman, encapsulate, generateKeyPairSync, hash as nodeHash, hkdfSync } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { type BenchRow, atLeast, atMost, interleavedMedians } from './harness.ts';

import { webCryptoBackend, type CryptoBackend } from '../protocol/backend.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import { decapsulateChunkedRequest, encapsulateChunkedRequest } from '../protocol/chunked.ts';
import { decapsulateRequest, encapsulateRequest, generateKeyConfig } from '../protocol/ohttp.ts';
import { KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256 } from '../protocol/hpke.ts';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { StreamChain, nobleSha256, type IncrementalSha256 } from '../protocol/stream-chain.ts';
import { acceptSession, initiateSession } from '../protocol/session.ts';
import { createClient } from '../client/index.ts';
import { startStack } from '../test/stack/harness.ts';

export const title = 'protocol: OHTTP, chunked OHTTP';

/**
 * Medians of `a` and `b` measured alternately, one run of each per round, so that load from other processes on a
 * shared machine hits value and floor alike (their ratio is what the targets are about).
 */
const paired = async (a: () => unknown, b: () => unknown, rounds: number, warmup: number) => (await interleavedMedians([a, b], rounds, 1, warmup)) as [number, number];

/**
 * Distinct encapsulated requests (and ephemeral keys in the floors) per benchmark, cycled: a gateway never sees an
 * ephemeral key twice, so a figure that decapsulated one request over and over would measure caches, not the path.
 * More than the node backend's 256 cached peer keys, so every run parses its key.
 */
const DISTINCT = 512;

/** Ephemeral X25519 public keys as PEM text: the cheapest way node:crypto imports a raw peer key (backend-node.ts). */
function ephemeralPems(): { pem: string; raw: Buffer }[] {
  return Array.from({ length: DISTINCT }, () => {
    const k = generateKeyPairSync('x25519').publicKey;
    return { pem: k.export({ format: 'pem', type: 'spki' }) as string, raw: k.export({ format: 'der', type: 'spki' }).subarray(12) };
  });
}

function info(name: string, value: number, unit: string, floorName: string, floor: number, note: string): BenchRow {
  return { name, value, unit, floorName, floor, ratio: value / floor, target: 'none (informational)', ok: true, note };
}

/**
 * Floor 1: what any X25519 + HKDF + AES-128-GCM decapsulation must do, straight on node:crypto: parse the peer key,
 * one agreement, one HKDF (extract + expand to key and nonce), one AES-128-GCM open of 1 KiB that authenticates.
 */
function floorDecap(): () => void {
  const r = generateKeyPairSync('x25519');
  const eph = ephemeralPems();
  let i = 0;
  const derive = (e: { pem: string; raw: Buffer }) => {
    const z = diffieHellman({ privateKey: r.privateKey, publicKey: createPublicKey(e.pem) });
    return Buffer.from(hkdfSync('sha256', z, e.raw, 'info', 28));
  };
  const okm0 = derive(eph[0]!);
  const c = createCipheriv('aes-128-gcm', createSecretKey(okm0.subarray(0, 16)), okm0.subarray(16));
  const ct = Buffer.concat([c.update(Buffer.alloc(1024, 3)), c.final()]);
  const tag = c.getAuthTag();
  return () => {
    // The per-request work on the next key: import, agreement, HKDF. The open uses the first key's output, which the
    // ciphertext was made under, so it authenticates: the same AEAD work as with the derived key.
    derive(eph[i++ % DISTINCT]!);
    const d = createDecipheriv('aes-128-gcm', createSecretKey(okm0.subarray(0, 16)), okm0.subarray(16));
    d.setAuthTag(tag);
    d.update(ct);
    d.final();
  };
}

async function decap(backend: CryptoBackend): Promise<() => Promise<unknown>> {
  const gk = await generateKeyConfig(1, undefined, { backend });
  const reqs: Uint8Array[] = [];
  for (let i = 0; i < DISTINCT; i++) reqs.push((await encapsulateRequest(gk.config, new Uint8Array(1024).fill(7), { backend })).encapsulated);
  let i = 0;
  return () => decapsulateRequest([gk], reqs[i++ % DISTINCT]!, { backend });
}

/** A chunked response of `n` chunks of `size` bytes, sealed by a gateway, and a function opening it all. */
async function chunkedResponse(backend: CryptoBackend, n: number, size: number) {
  const gk = await generateKeyConfig(2, undefined, { backend });
  const s = await encapsulateChunkedRequest(gk.config, { backend });
  const g = decapsulateChunkedRequest([gk], { backend });
  await g.push(await s.sealChunk(new Uint8Array([1]), { final: true }));
  await g.end();
  const rs = await g.sealResponse();
  const parts: Uint8Array[] = [];
  for (let i = 0; i < n; i++) parts.push(await rs.sealChunk(new Uint8Array(size).fill(i)));
  parts.push(await rs.sealChunk(new Uint8Array(0), { final: true }));
  // Each open needs a fresh response context (single use), so the bench re-derives one per run from a new request.
  // The sealed parts are copied into fresh allocations, as bytes read from a socket would be: sealing interleaves them
  // with its own temporaries, and reading from that scattered layout measured ~15% slower than the floor's buffers.
  return { parts: parts.map((p) => p.slice()), s };
}

async function openChunked(backend: CryptoBackend, n: number, size: number, runs: number): Promise<() => Promise<void>> {
  const all: { parts: Uint8Array[]; s: Awaited<ReturnType<typeof encapsulateChunkedRequest>> }[] = [];
  for (let i = 0; i < runs; i++) all.push(await chunkedResponse(backend, n, size));
  let i = 0;
  return async () => {
    const { parts, s } = all[i++]!; // a response context opens once
    const o = s.openResponse();
    for (const p of parts) await o.push(p);
    await o.end();
  };
}

/**
 * Floor 2: raw AES-128-GCM opens of `n` chunks of `size` bytes per message. Like the measured side it walks through
 * `runs` distinct messages, so both read ciphertext that is not already in the CPU cache.
 */
function floorOpenChunks(n: number, size: number, runs: number): () => void {
  const key = createSecretKey(Buffer.alloc(16, 1));
  const msgs: { nonce: Buffer; ct: Buffer; tag: Buffer }[][] = [];
  for (let m = 0; m < runs; m++) {
    const chunks: { nonce: Buffer; ct: Buffer; tag: Buffer }[] = [];
    for (let i = 0; i < n; i++) {
      const nonce = Buffer.alloc(12, i);
      nonce.writeUInt32BE(m, 0);
      const c = createCipheriv('aes-128-gcm', key, nonce);
      const ct = Buffer.concat([c.update(Buffer.alloc(size, i)), c.final()]);
      chunks.push({ nonce, ct, tag: c.getAuthTag() });
    }
    msgs.push(chunks);
  }
  let m = 0;
  return () => {
    for (const ch of msgs[m++ % runs]!) {
      const d = createDecipheriv('aes-128-gcm', key, ch.nonce);
      d.setAuthTag(ch.tag);
      d.update(ch.ct);
      d.final();
    }
  };
}

const SMALL = 64;
const BATCH = 50;

/**
 * Sealing and opening one token's chunk happen on different sides (the enclave seals, the client opens), so the
 * per-chunk target applies to each side's operation; both are measured separately (seal all of a batch, then open
 * it) beside the raw node:crypto AES-128-GCM seal and open of the same bytes, and their sum is reported too.
 */
async function smallChunks(backend: CryptoBackend): Promise<{ seal: () => Promise<void>; open: () => Promise<void> }> {
  const gk = await generateKeyConfig(3, undefined, { backend });
  const s = await encapsulateChunkedRequest(gk.config, { backend });
  const g = decapsulateChunkedRequest([gk], { backend });
  await g.push(await s.sealChunk(new Uint8Array([1]), { final: true }));
  await g.end();
  const rs = await g.sealResponse();
  const o = s.openResponse();
  const pt = new Uint8Array(SMALL).fill(0x61);
  let sealed: Uint8Array[] = [];
  return {
    seal: async () => {
      sealed = [];
      for (let i = 0; i < BATCH; i++) sealed.push(await rs.sealChunk(pt));
    },
    open: async () => {
      for (const c of sealed) await o.push(c);
    },
  };
}

function floorSmall(): { seal: () => void; open: () => void } {
  const key = createSecretKey(Buffer.alloc(16, 1));
  const pt = Buffer.alloc(SMALL, 0x61);
  let ctr = 0;
  let sealed: { nonce: Buffer; ct: Buffer; tag: Buffer }[] = [];
  return {
    seal: () => {
      sealed = [];
      for (let i = 0; i < BATCH; i++) {
        const nonce = Buffer.alloc(12);
        nonce.writeUInt32BE(ctr++, 8);
        const c = createCipheriv('aes-128-gcm', key, nonce);
        const ct = Buffer.concat([c.update(pt), c.final()]);
        sealed.push({ nonce, ct, tag: c.getAuthTag() });
      }
    },
    open: () => {
      for (const { nonce, ct, tag } of sealed) {
        const d = createDecipheriv('aes-128-gcm', key, nonce);
        d.setAuthTag(tag);
        d.update(ct);
        d.final();
      }
    },
  };
}

/** Medians per chunk of seal and open (gm, then the floor), the four timed in turn each round. */
async function smallRound(backend: CryptoBackend, rounds: number, warmup: number): Promise<{ seal: number; open: number; fseal: number; fopen: number }> {
  const m = await smallChunks(backend);
  const f = floorSmall();
  const [seal, open, fseal, fopen] = (await interleavedMedians([m.seal, m.open, f.seal, f.open], rounds, 1, warmup)).map((x) => x / BATCH) as [number, number, number, number];
  return { seal, open, fseal, fopen };
}

/**
 * The ML-KEM-768 floor of each backend: node:crypto's (OpenSSL) for the node backend, noble's (prepared key) for the
 * portable one. Each X-Wing row is measured against the ML-KEM its backend uses, so the ratio is gm's overhead.
 */
interface MlKemFloor {
  encapsulate(): void;
  decapsulate(): void;
}

function nativeMlKem(): MlKemFloor {
  const { publicKey, privateKey } = generateKeyPairSync('ml-kem-768');
  const { ciphertext } = encapsulate(publicKey);
  return { encapsulate: () => encapsulate(publicKey), decapsulate: () => decapsulate(privateKey, ciphertext) };
}

function nobleMlKem(): MlKemFloor {
  const { publicKey, secretKey } = ml_kem768.keygen();
  const p = ml_kem768.prepare(publicKey);
  const { cipherText } = p.encapsulate();
  return { encapsulate: () => p.encapsulate(), decapsulate: () => p.decapsulate(cipherText, secretKey) };
}

/**
 * Floor 4a: what any X-Wing decapsulation of a 1 KiB request must do: one ML-KEM-768 decapsulation, then the X25519
 * floor (parse the peer key, one agreement, HKDF, AES-128-GCM open). The SHA3-256 combiner, HPKE's labels and the
 * parsing are what gm adds.
 */
function floorXWingDecap(m: MlKemFloor): () => void {
  const x = floorDecap();
  return () => {
    m.decapsulate();
    x();
  };
}

/** Floor 4b, the client's side: ML-KEM-768 encapsulation, a fresh X25519 key and agreement, HKDF, seal. */
function floorXWingEncap(m: MlKemFloor): () => void {
  const r = generateKeyPairSync('x25519');
  const pt = Buffer.alloc(1024, 7);
  return () => {
    m.encapsulate();
    const e = generateKeyPairSync('x25519');
    const z = diffieHellman({ privateKey: e.privateKey, publicKey: r.publicKey });
    const okm = Buffer.from(hkdfSync('sha256', z, e.publicKey.export({ format: 'der', type: 'spki' }).subarray(12), 'info', 28));
    const c = createCipheriv('aes-128-gcm', createSecretKey(okm.subarray(0, 16)), okm.subarray(16));
    c.update(pt);
    c.final();
    c.getAuthTag();
  };
}

async function xwingDecap(backend: CryptoBackend, respond = false): Promise<() => Promise<unknown>> {
  const gk = await generateKeyConfig(1, undefined, { backend, kemId: KEM_MLKEM768_X25519 });
  const reqs: Uint8Array[] = [];
  for (let i = 0; i < DISTINCT; i++) reqs.push((await encapsulateRequest(gk.config, new Uint8Array(1024).fill(7), { backend })).encapsulated);
  const answer = new Uint8Array(1024).fill(9);
  let i = 0;
  return async () => {
    const { context } = await decapsulateRequest([gk], reqs[i++ % DISTINCT]!, { backend });
    if (respond) await context.sealResponse(answer);
  };
}

/**
 * Floor 4c, the bare public-key work of the client leg on the enclave: one ML-KEM-768 decapsulation and one X25519
 * import of a fresh peer key and agreement, node:crypto. Everything else of a request's decapsulation and response
 * (HPKE's key schedule, the response keys, two AEAD calls, the combiner) is what the row above it adds.
 */
function floorKem(m: MlKemFloor): () => void {
  const r = generateKeyPairSync('x25519');
  const eph = ephemeralPems();
  let i = 0;
  return () => {
    m.decapsulate();
    diffieHellman({ privateKey: r.privateKey, publicKey: createPublicKey(eph[i++ % DISTINCT]!.pem) });
  };
}

async function xwingEncap(backend: CryptoBackend): Promise<() => Promise<unknown>> {
  const gk = await generateKeyConfig(1, undefined, { backend, kemId: KEM_MLKEM768_X25519 });
  const pt = new Uint8Array(1024).fill(7);
  return () => encapsulateRequest(gk.config, pt, { backend });
}

/**
 * Row 5: two stacks side by side, one whose enclave and worker attest X-Wing + X25519 (the SDK and the enclave
 * choose X-Wing) and one with X25519 only; the same 1 KiB non-streaming chat request through client.fetch to each,
 * timed alternately. Everything but the KEM is the same code on the same machine.
 */
async function endToEnd(rounds: number, warmup: number): Promise<[number, number]> {
  const hybrid = await startStack({ workers: [{}], router: 'first' });
  const classic = await startStack({ workers: [{}], router: 'first', kems: [KEM_X25519_HKDF_SHA256] });
  try {
    const body = JSON.stringify({ model: 'gm-dev-1', messages: [{ role: 'user', content: 'x'.repeat(1024) }], max_tokens: 4 });
    const call = async (url: string) => {
      const c = await createClient({ url, allowSim: true });
      const kem = c.verification.checks.find((x) => x.id === 'client.key-config')?.detail ?? '';
      return {
        kem,
        once: async () => {
          const r = await c.fetch(`${c.baseURL}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
          if (r.status !== 200) throw new Error(`bench: the stack answered HTTP ${r.status}`);
          await r.arrayBuffer();
        },
      };
    };
    const h = await call(hybrid.enclaveUrl);
    const x = await call(classic.enclaveUrl);
    if (!h.kem.includes('X-Wing') || x.kem.includes('X-Wing')) throw new Error(`bench: unexpected KEMs (${h.kem} / ${x.kem})`);
    return (await interleavedMedians([h.once, x.once], rounds, 1, warmup)) as [number, number];
  } finally {
    await hybrid.stop();
    await classic.stop();
  }
}

/**
 * Row 6: a 64-byte response record on the session, in blocks of 200 records (awaited one by one, as the worker
 * does), against the bare node:crypto seal of the same plaintext with a 31-byte AAD (the record's), awaited the same.
 */
async function sessionSeal(rounds: number): Promise<[number, number]> {
  const gk = await generateKeyConfig(4, undefined, { backend: nodeBackend });
  const cred = new Uint8Array(32).fill(1);
  const h = await initiateSession(gk.config, 'w', cred, { kid: '00', backend: nodeBackend });
  const a = await acceptSession([gk], 'w', cred, '00', h.init, { backend: nodeBackend });
  const s = await h.finish(a.reply);
  const { response } = await a.responder.open((await s.seal(new Uint8Array(10), true)).message);
  const chunk = new Uint8Array(SMALL).fill(0x61);
  const key = createSecretKey(Buffer.alloc(16, 1));
  const nonce = Buffer.alloc(12);
  const aad = Buffer.alloc(31);
  const B = 200;
  const r = await interleavedMedians([
    async () => {
      for (let i = 0; i < B; i++) await response.seal(chunk);
    },
    async () => {
      for (let i = 0; i < B; i++) {
        nonce.writeUInt32BE(i, 8);
        const c = createCipheriv('aes-128-gcm', key, nonce);
        c.setAAD(aad);
        c.update(chunk);
        c.final();
        await c.getAuthTag();
      }
    },
  ], rounds, 1, 20);
  return [r[0]! / B, r[1]! / B];
}

/**
 * Row 7: the stream commitment per 64-byte chunk, on the enclave (node:crypto) and in the client SDK (noble), each
 * beside a bare one-shot SHA-256 of the same chunk with the same library, timed alternately in blocks of N chunks.
 */
async function streamChain(): Promise<BenchRow[]> {
  const chunk = new Uint8Array(64).fill(0x61);
  const N = 2_000;
  const rows: BenchRow[] = [];
  const sides: [string, () => IncrementalSha256, (b: Uint8Array) => Uint8Array][] = [
    ['enclave, node:crypto', () => createHash('sha256'), (b) => nodeHash('sha256', b, 'buffer')],
    ['client SDK, @noble/hashes', nobleSha256, sha256],
  ];
  for (const [who, create, bare] of sides) {
    const chain = new StreamChain(create);
    const [per, floor] = (await interleavedMedians([
      () => {
        for (let i = 0; i < N; i++) chain.add(chunk);
      },
      () => {
        for (let i = 0; i < N; i++) bare(chunk);
      },
    ], 60, 1, 10)).map((x) => x / N) as [number, number];
    rows.push({ name: `stream commitment, one 64-byte chunk (${who})`, value: per, unit: 'us', floorName: 'bare one-shot SHA-256 of the chunk (same library)', floor, ratio: per / floor, target: '<= 1 us per chunk', ok: per <= 1 });
  }
  return rows;
}

/** The protocol modules a client-leg figure runs on: this tree's, or a baseline checkout's (GM_BENCH_BASELINE). */
interface ProtocolModules {
  readonly backend: CryptoBackend;
  readonly ohttp: typeof import('../protocol/ohttp.ts');
}

async function baselineModules(dir: string): Promise<ProtocolModules> {
  const root = pathToFileURL(`${dir.replace(/\/$/, '')}/`).href;
  const { nodeBackend: backend } = (await import(`${root}protocol/node/backend-node.ts`)) as typeof import('../protocol/node/backend-node.ts');
  return { backend, ohttp: (await import(`${root}protocol/ohttp.ts`)) as typeof import('../protocol/ohttp.ts') };
}

/**
 * The client leg of one request on the given modules, X-Wing and 1 KiB each way: the enclave's decapsulate + open +
 * seal (over DISTINCT requests in turn), the client's encapsulate + seal, and the client's open of a response (each
 * response context opens once, so `open` walks through `opens` contexts prepared beforehand).
 */
async function clientLeg(m: ProtocolModules, opens: number): Promise<{ enclave: () => Promise<unknown>; encap: () => Promise<unknown>; open: () => Promise<unknown> }> {
  const { backend, ohttp } = m;
  const gk = await ohttp.generateKeyConfig(1, undefined, { backend, kemId: KEM_MLKEM768_X25519 });
  const pt = new Uint8Array(1024).fill(7);
  const answer = new Uint8Array(1024).fill(9);
  const reqs: Uint8Array[] = [];
  for (let i = 0; i < DISTINCT; i++) reqs.push((await ohttp.encapsulateRequest(gk.config, pt, { backend })).encapsulated);
  const answered: { open(r: Uint8Array): Promise<Uint8Array>; response: Uint8Array }[] = [];
  for (let i = 0; i < opens; i++) {
    const { encapsulated, context } = await ohttp.encapsulateRequest(gk.config, pt, { backend });
    const g = await ohttp.decapsulateRequest([gk], encapsulated, { backend });
    answered.push({ open: (r) => context.openResponse(r), response: (await g.context.sealResponse(answer)).slice() });
  }
  let i = 0;
  let j = 0;
  return {
    enclave: async () => {
      const { context } = await ohttp.decapsulateRequest([gk], reqs[i++ % DISTINCT]!, { backend });
      await context.sealResponse(answer);
    },
    encap: () => ohttp.encapsulateRequest(gk.config, pt, { backend }),
    open: () => {
      const a = answered[j++];
      if (!a) throw new Error('bench: more response opens than prepared');
      return a.open(a.response);
    },
  };
}

/** Floor 8: the bare AES-128-GCM open of a 1 KiB response under a fresh key object, node:crypto. */
function floorOpenResponse(): () => void {
  const k = Buffer.alloc(16, 5);
  const iv = Buffer.alloc(12, 6);
  const c = createCipheriv('aes-128-gcm', k, iv);
  const ct = Buffer.concat([c.update(Buffer.alloc(1024, 9)), c.final()]);
  const tag = c.getAuthTag();
  return () => {
    const d = createDecipheriv('aes-128-gcm', createSecretKey(k), iv);
    d.setAuthTag(tag);
    d.update(ct);
    d.final();
  };
}

/** Rows 8: the client's response open, and with a baseline tree the client leg's figures, this tree ÷ that. */
async function clientLegRows(): Promise<BenchRow[]> {
  const R = 400;
  const W = 40;
  const here: ProtocolModules = { backend: nodeBackend, ohttp: await import('../protocol/ohttp.ts') };
  const ours = await clientLeg(here, R + W);
  const [o8, f8] = await paired(ours.open, floorOpenResponse(), R, W);
  const rows = [info('client opens a 1 KiB X-Wing OHTTP response (node backend)', o8, 'us', 'bare AES-128-GCM open of the same bytes, fresh key object (node:crypto)', f8, 'Export, HKDF and the AEAD key are what it adds')];
  const dir = process.env.GM_BENCH_BASELINE;
  if (!dir) return rows;
  const base = await clientLeg(await baselineModules(dir), R + W);
  const again = await clientLeg(here, R + W);
  const compare: [string, () => Promise<unknown>, () => Promise<unknown>][] = [
    ['client leg on the enclave: X-Wing decapsulate + open 1 KiB + seal 1 KiB response', again.enclave, base.enclave],
    ['client: X-Wing encapsulate + seal 1 KiB request', again.encap, base.encap],
    ['client: open a 1 KiB X-Wing response', again.open, base.open],
  ];
  for (const [name, a, b] of compare) {
    const [x, y] = await paired(a, b, R, W);
    rows.push(info(`${name}, this tree vs GM_BENCH_BASELINE (node backend)`, x, 'us', `the same on ${dir}`, y, 'timed alternately in the same rounds'));
  }
  return rows;
}

export async function run(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [...(await streamChain())];
  const [ss, fs] = await sessionSeal(200);
  rows.push({ ...atMost('seal one 64-byte record on the enclave → worker session (node backend)', ss, 'us', 'bare AES-128-GCM seal, 31-byte AAD (node:crypto)', fs, Infinity), target: '<= 5 us per record', ok: ss <= 5 });

  const [d1, f1] = await paired(await decap(nodeBackend), floorDecap(), 2000, 200);
  rows.push(atMost('decapsulate + open 1 KiB OHTTP request (node backend)', d1, 'us', 'X25519 + HKDF + AES-128-GCM open (node:crypto)', f1, 1.5));
  const [w1, g1] = await paired(await decap(webCryptoBackend), floorDecap(), 1000, 100);
  rows.push(info('decapsulate + open 1 KiB OHTTP request (webcrypto backend)', w1, 'us', 'same floor', g1, 'runtime-agnostic default'));

  // A 1 MiB response (64 chunks): the per-message key derivation (Export + HKDF) is part of the measured cost.
  const N = 64;
  const SIZE = 16 * 1024;
  const MB = (N * SIZE) / 1e6;
  const R = 100;
  const W = 20;
  const [d2, f2] = await paired(await openChunked(nodeBackend, N, SIZE, R + W), floorOpenChunks(N, SIZE, R + W), R, W);
  rows.push(atLeast('open chunked response, 16 KiB chunks (node backend)', MB / (d2 / 1e6), 'MB/s', 'raw AES-128-GCM open per chunk (node:crypto)', MB / (f2 / 1e6), 0.7));
  const [w2, g2] = await paired(await openChunked(webCryptoBackend, N, SIZE, 30 + 5), floorOpenChunks(N, SIZE, 35), 30, 5);
  rows.push(info('open chunked response, 16 KiB chunks (webcrypto backend)', MB / (w2 / 1e6), 'MB/s', 'same floor', MB / (g2 / 1e6), 'runtime-agnostic default'));

  const n3 = await smallRound(nodeBackend, 400, 40);
  const perChunk = (name: string, v: number, floorName: string, f: number): BenchRow => ({ ...atMost(name, v, 'us', floorName, f, Infinity), target: '<= 5 us per chunk', ok: v <= 5 });
  rows.push(perChunk('seal one 64-byte chunk, enclave side (node backend)', n3.seal, 'raw AES-128-GCM seal (node:crypto)', n3.fseal));
  rows.push(perChunk('open one 64-byte chunk, client side (node backend)', n3.open, 'raw AES-128-GCM open (node:crypto)', n3.fopen));
  rows.push(info('seal + open one 64-byte chunk, both sides summed (node backend)', n3.seal + n3.open, 'us', 'raw AES-128-GCM seal + open (node:crypto)', n3.fseal + n3.fopen, 'informational: the two happen in different processes'));
  const w3 = await smallRound(webCryptoBackend, 100, 10);
  rows.push(info('seal + open one 64-byte chunk (webcrypto backend)', w3.seal + w3.open, 'us', 'same floor', w3.fseal + w3.fopen, 'runtime-agnostic default'));

  const [d4, f4] = await paired(await xwingDecap(nodeBackend), floorXWingDecap(nativeMlKem()), 600, 60);
  rows.push(atMost('X-Wing decapsulate + open 1 KiB OHTTP request (node backend)', d4, 'us', 'ML-KEM-768 decapsulate (node:crypto) + X25519 + HKDF + AES-128-GCM open', f4, 1.5));
  const [c4, k4c] = await paired(await xwingDecap(nodeBackend, true), floorKem(nativeMlKem()), 600, 60);
  rows.push(info('client leg on the enclave: X-Wing decapsulate + open 1 KiB request + seal 1 KiB response (node backend)', c4, 'us', 'ML-KEM-768 decapsulate + X25519 import of a fresh peer key + agreement (node:crypto)', k4c, 'what HPKE, OHTTP and the AEADs add to the public-key floor'));
  const [w4, g4] = await paired(await xwingDecap(webCryptoBackend), floorXWingDecap(nobleMlKem()), 300, 30);
  rows.push(info('X-Wing decapsulate + open 1 KiB OHTTP request (webcrypto backend)', w4, 'us', 'ML-KEM-768 decapsulate (noble) + the same X25519 floor', g4, 'runtime-agnostic default'));
  const [e4, h4] = await paired(await xwingEncap(nodeBackend), floorXWingEncap(nativeMlKem()), 600, 60);
  rows.push(atMost('X-Wing encapsulate + seal 1 KiB OHTTP request, client (node backend)', e4, 'us', 'ML-KEM-768 encapsulate (node:crypto) + X25519 generate and agreement + HKDF + AES-128-GCM seal', h4, 1.5));
  const [v4, k4] = await paired(await xwingEncap(webCryptoBackend), floorXWingEncap(nobleMlKem()), 300, 30);
  rows.push(info('X-Wing encapsulate + seal 1 KiB OHTTP request, client (webcrypto backend: browsers, the SDK)', v4, 'us', 'ML-KEM-768 encapsulate (noble) + the same X25519 floor', k4, 'runtime-agnostic default'));

  rows.push(...(await clientLegRows()));

  const [e5, x5] = await endToEnd(300, 30);
  rows.push(atMost('1 KiB chat request through the whole stack, X-Wing on both hops', e5, 'us', 'the same stack with X25519 only', x5, 1.3, 'encapsulated key 1120 B instead of 32 B on each hop'));
  return rows;
}
