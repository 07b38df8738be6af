import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromHex, hex } from '../attestation/bytes.ts';
import { importPrivateKey } from './hpke.ts';
import {
  decapsulateChunkedRequest,
  encapsulateChunkedRequest,
  openStream,
  sealStream,
  type ChunkOpener,
  type ChunkSealer,
} from './chunked.ts';
import { encodeKeyConfig, gatewayKeyFromPrivateKey, generateKeyConfig, type GatewayKey } from './ohttp.ts';
import { nodeBackend } from './node/backend-node.ts';
import { readVarint } from './varint.ts';
import { ReplayCache } from './replay.ts';

const te = new TextEncoder();
const cat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

async function sealAll(s: ChunkSealer, chunks: Uint8Array[], finalPt = new Uint8Array()): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const c of chunks) out.push(await s.sealChunk(c));
  out.push(await s.sealChunk(finalPt, { final: true }));
  return out;
}

async function openAll(o: ChunkOpener, wire: Uint8Array, split: number[] = []): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const at of [...split.filter((x) => x > 0 && x < wire.length).sort((a, b) => a - b), wire.length]) {
    out.push(...(await o.push(wire.subarray(prev, at))));
    prev = at;
  }
  out.push(...(await o.end()));
  return out;
}

describe('draft-ietf-ohai-chunked-ohttp-08 Appendix A example', () => {
  // Values from the draft's example section (ietf-wg-ohai/draft-ohai-chunked-ohttp).
  const skR = '1c190d72acdbe4dbc69e680503bb781a932c70a12c8f3754434c67d8640d8698';
  const keyConfig = '010020668eb21aace159803974a4c67f08b4152d29bed10735fd08f98ccdd6fe09570800080001000100010003';
  const skE = 'b26d565f3f875ed480d1abced3d665159650c99174fd0b124ac4bda0c64ae324';
  const request = '00034745540568747470730b6578616d706c652e636f6d012f';
  const encRequest =
    '01002000010001' + '8811eb457e100811c40a0aa71340a1b81d804bb986f736f2f566a7199761a032' +
    '1c2ad24942d4d692563012f2980c8fef437a336b9b2fc938ef77a5834f' +
    '1d2e33d8fd25577afe31bd1c79d094f76b6250ae6549b473ecd950501311' + '001c6c1395d0ef7c1022297966307b8a7f';
  const responseNonce = 'bcce7f4cb921309ba5d62edf1769ef09';
  const encResponse =
    responseNonce + '1179bf1cc87fa0e2c02de4546945aa3d1e48' + '12b348b5bd4c594c16b6170b07b475845d1f32' + '00ed9d8a796617a5b27265f4d73247f639';

  for (const backend of [undefined, nodeBackend]) {
    it(`reproduces the chunked request and response byte for byte (${backend?.name ?? 'default'})`, async () => {
      const o = backend ? { backend } : {};
      const gk = await gatewayKeyFromPrivateKey(1, fromHex(skR), [{ kdfId: 1, aeadId: 1 }, { kdfId: 1, aeadId: 3 }], o);
      expect(hex(encodeKeyConfig(gk.config))).toBe(keyConfig);
      const req = fromHex(request);
      const s = await encapsulateChunkedRequest(gk.config, { ...o, ephemeralKeyPair: await importPrivateKey(fromHex(skE), backend) });
      expect(hex(cat(await sealAll(s, [req.subarray(0, 12), req.subarray(12)])))).toBe(encRequest);
      const g = decapsulateChunkedRequest([gk], o);
      expect((await openAll(g, fromHex(encRequest))).map(hex)).toEqual(['00034745540568747470730b', '6578616d706c652e636f6d012f', '']);
      expect(g.complete).toBe(true);
      const rs = await g.sealResponse({ responseNonce: fromHex(responseNonce) });
      const res = fromHex('0140c8');
      expect(hex(cat(await sealAll(rs, [res.subarray(0, 1), res.subarray(1)])))).toBe(encResponse);
      expect((await openAll(s.openResponse(), fromHex(encResponse))).map(hex)).toEqual(['01', '40c8', '']);
    });
  }
});

describe('chunked round trips (fast-check)', () => {
  let gk: GatewayKey;
  const chunkArb = fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 12 });

  it('any chunking of request and response, delivered in any byte splits, opens to the same chunks', async () => {
    gk ??= await generateKeyConfig(9);
    await fc.assert(
      fc.asyncProperty(chunkArb, fc.uint8Array({ maxLength: 64 }), chunkArb, fc.array(fc.nat(5000), { maxLength: 6 }), async (reqChunks, finalPt, resChunks, splits) => {
        const s = await encapsulateChunkedRequest(gk.config);
        const wire = cat(await sealAll(s, reqChunks, finalPt));
        const g = decapsulateChunkedRequest([gk]);
        const got = await openAll(g, wire, splits);
        expect(got.map(hex)).toEqual([...reqChunks, finalPt].map(hex));
        const rs = await g.sealResponse();
        const rwire = cat(await sealAll(rs, resChunks));
        expect((await openAll(s.openResponse(), rwire, splits)).map(hex)).toEqual([...resChunks, new Uint8Array()].map(hex));
      }),
      { numRuns: 60, seed: 0x5eed },
    );
  });
});

/** Splits a chunked response into its nonce, framed non-final chunks and the framed final chunk. */
function frames(wire: Uint8Array, prefix: number): { prefix: Uint8Array; chunks: Uint8Array[] } {
  const chunks: Uint8Array[] = [];
  let o = prefix;
  while (o < wire.length) {
    const r = readVarint(wire, o)!;
    const end = r.value === 0 ? wire.length : r.next + r.value;
    chunks.push(wire.subarray(o, end));
    o = end;
  }
  return { prefix: wire.subarray(0, prefix), chunks };
}

for (const backend of [undefined, nodeBackend]) describe(`tamper detection, each with its own code (${backend?.name ?? 'default'} backend)`, () => {
  const o = backend ? { backend } : {};
  const pieces = ['data: {"token":"The"}\n\n', 'data: {"token":" answer"}\n\n', 'data: {"token":" is"}\n\n', 'data: {"token":" 42"}\n\n'];

  async function setup() {
    const gk = await generateKeyConfig(5, undefined, o);
    const s = await encapsulateChunkedRequest(gk.config, o);
    const reqWire = cat(await sealAll(s, [te.encode('request')]));
    const g = decapsulateChunkedRequest([gk], o);
    await openAll(g, reqWire);
    const rs = await g.sealResponse();
    const resWire = cat(await sealAll(rs, pieces.map((p) => te.encode(p)), te.encode('data: [DONE]\n\n')));
    return { gk, s, reqWire, resWire, f: frames(resWire, 16) };
  }

  const expectCode = async (p: Promise<unknown>, code: string) => {
    const e = await p.then(() => undefined, (x: unknown) => x);
    expect(e, `expected ${code}`).toMatchObject({ code });
  };

  it('untampered response opens', async () => {
    const { s, resWire } = await setup();
    const got = await openAll(s.openResponse(), resWire);
    expect(new TextDecoder().decode(cat(got))).toBe(pieces.join('') + 'data: [DONE]\n\n');
  });

  it('flipped byte: CHUNKED_DECRYPT_FAILED', async () => {
    const { s, f } = await setup();
    const c = f.chunks.map((x) => x.slice());
    c[1]![5]! ^= 1;
    await expectCode(openAll(s.openResponse(), cat([f.prefix, ...c])), 'CHUNKED_DECRYPT_FAILED');
  });

  it('flipped byte in the final chunk: CHUNKED_DECRYPT_FAILED', async () => {
    const { s, f } = await setup();
    const last = f.chunks.map((x) => x.slice());
    last[last.length - 1]![3]! ^= 1;
    await expectCode(openAll(s.openResponse(), cat([f.prefix, ...last])), 'CHUNKED_DECRYPT_FAILED');
  });

  it('reordered chunks: CHUNKED_REORDERED', async () => {
    const { s, f } = await setup();
    const c = [...f.chunks];
    [c[1], c[2]] = [c[2]!, c[1]!];
    await expectCode(openAll(s.openResponse(), cat([f.prefix, ...c])), 'CHUNKED_REORDERED');
  });

  it('dropped chunk: CHUNKED_DROPPED', async () => {
    const { s, f } = await setup();
    const c = [...f.chunks];
    c.splice(1, 1);
    await expectCode(openAll(s.openResponse(), cat([f.prefix, ...c])), 'CHUNKED_DROPPED');
  });

  it('duplicated chunk: CHUNKED_DUPLICATE', async () => {
    const { s, f } = await setup();
    const c = [...f.chunks];
    c.splice(2, 0, c[1]!);
    await expectCode(openAll(s.openResponse(), cat([f.prefix, ...c])), 'CHUNKED_DUPLICATE');
  });

  it('truncated before the final chunk: CHUNKED_TRUNCATED', async () => {
    const { s, f } = await setup();
    const c = f.chunks.slice(0, -1);
    const o = s.openResponse();
    // Everything before the cut still opens incrementally, but the message never completes.
    const seen = await o.push(cat([f.prefix, ...c]));
    expect(seen).toHaveLength(pieces.length);
    await expectCode(o.end(), 'CHUNKED_TRUNCATED');
    expect(o.complete).toBe(false);
  });

  it('appended after the final chunk: CHUNKED_EXTENDED', async () => {
    const { s, f } = await setup();
    await expectCode(openAll(s.openResponse(), cat([f.prefix, ...f.chunks, f.chunks[0]!])), 'CHUNKED_EXTENDED');
  });

  it('a long final chunk with a chunk appended: CHUNKED_EXTENDED', async () => {
    const gk = await generateKeyConfig(14, undefined, o);
    const s = await encapsulateChunkedRequest(gk.config, o);
    const g = decapsulateChunkedRequest([gk], o);
    await openAll(g, cat(await sealAll(s, [te.encode('q')])));
    const rs = await g.sealResponse();
    const a = await rs.sealChunk(te.encode('first'));
    const fin = await rs.sealChunk(new Uint8Array(5000).fill(0x2e), { final: true });
    await expectCode(openAll(s.openResponse(), cat([a, fin, a.subarray(16)])), 'CHUNKED_EXTENDED');
  });

  it('a second final chunk appended: CHUNKED_EXTENDED', async () => {
    const { s, f } = await setup();
    await expectCode(openAll(s.openResponse(), cat([f.prefix, ...f.chunks, f.chunks[f.chunks.length - 1]!])), 'CHUNKED_EXTENDED');
  });

  it('request side: the same tampers fail with the same codes', async () => {
    const gk = await generateKeyConfig(6, undefined, o);
    const s = await encapsulateChunkedRequest(gk.config, o);
    const wire = cat(await sealAll(s, ['a', 'b', 'c'].map((x) => te.encode(x))));
    const f = frames(wire, 39);
    const run = (chunks: Uint8Array[]) => openAll(decapsulateChunkedRequest([gk], o), cat([f.prefix, ...chunks]));
    const c = [...f.chunks];
    [c[0], c[1]] = [c[1]!, c[0]!];
    await expectCode(run(c), 'CHUNKED_REORDERED');
    await expectCode(run([f.chunks[0]!, f.chunks[2]!, f.chunks[3]!]), 'CHUNKED_DROPPED');
    await expectCode(run([f.chunks[0]!, f.chunks[0]!, ...f.chunks.slice(1)]), 'CHUNKED_DUPLICATE');
    await expectCode(run(f.chunks.slice(0, 3)), 'CHUNKED_TRUNCATED');
    await expectCode(run([...f.chunks, f.chunks[1]!]), 'CHUNKED_EXTENDED');
    const flipped = f.chunks.map((x) => x.slice());
    flipped[2]![2]! ^= 0x40;
    await expectCode(run(flipped), 'CHUNKED_DECRYPT_FAILED');
  });

  it('an empty non-final chunk is a decryption error; a sealer refuses to produce one', async () => {
    const gk = await generateKeyConfig(7, undefined, o);
    const s = await encapsulateChunkedRequest(gk.config, o);
    await expect(s.sealChunk(new Uint8Array())).rejects.toMatchObject({ code: 'CHUNKED_EMPTY_CHUNK' });
    await s.sealChunk(new Uint8Array(1), { final: true });
    await expect(s.sealChunk(new Uint8Array(1))).rejects.toMatchObject({ code: 'CHUNKED_AFTER_FINAL' });
  });

  it('overlapping sealChunk calls get distinct counters and open in call order', async () => {
    const gk = await generateKeyConfig(13, undefined, o);
    const s = await encapsulateChunkedRequest(gk.config, o);
    const g = decapsulateChunkedRequest([gk], o);
    const parts = await Promise.all([s.sealChunk(te.encode('x')), s.sealChunk(te.encode('x')), s.sealChunk(te.encode('y'), { final: true })]);
    expect((await openAll(g, cat(parts))).map((x) => new TextDecoder().decode(x))).toEqual(['x', 'x', 'y']);
    const rs = await g.sealResponse();
    const rparts = await Promise.all([rs.sealChunk(te.encode('a')), rs.sealChunk(te.encode('a')), rs.sealChunk(new Uint8Array(), { final: true })]);
    expect(hex(rparts[0]!.subarray(16))).not.toBe(hex(rparts[1]!));
    expect((await openAll(s.openResponse(), cat(rparts))).map((x) => new TextDecoder().decode(x))).toEqual(['a', 'a', '']);
  });

  it('bounds chunk size', async () => {
    const gk = await generateKeyConfig(8, undefined, o);
    const s = await encapsulateChunkedRequest(gk.config, o);
    const wire = cat(await sealAll(s, [new Uint8Array(2000)]));
    await expectCode(openAll(decapsulateChunkedRequest([gk], { ...o, maxChunk: 1000 }), wire), 'CHUNKED_TOO_LARGE');
    // A length prefix announcing 2^62 - 1 bytes is refused at once, not awaited.
    const huge = cat([wire.subarray(0, 39), new Uint8Array(8).fill(0xff)]);
    await expectCode(decapsulateChunkedRequest([gk], o).push(huge), 'CHUNKED_TOO_LARGE');
  });

  it('bounds the number of chunks, refusing the one over the budget before opening it', async () => {
    const gk = await generateKeyConfig(9, undefined, o);
    const four = async () => cat(await sealAll(await encapsulateChunkedRequest(gk.config, o), [te.encode('a'), te.encode('b'), te.encode('c')]));
    expect(await openAll(decapsulateChunkedRequest([gk], { ...o, maxChunks: 4 }), await four())).toHaveLength(4);
    await expectCode(openAll(decapsulateChunkedRequest([gk], { ...o, maxChunks: 3 }), await four()), 'CHUNKED_TOO_MANY_CHUNKS');
  });

  it('the replay cache sees the encapsulated key once the first chunk authenticates', async () => {
    const gk = await generateKeyConfig(10, undefined, o);
    const replay = new ReplayCache({ maxEntries: 10, windowMs: 60_000 });
    const s = await encapsulateChunkedRequest(gk.config, o);
    const wire = cat(await sealAll(s, [te.encode('x')]));
    await openAll(decapsulateChunkedRequest([gk], { ...o, replay }), wire);
    await expectCode(openAll(decapsulateChunkedRequest([gk], { ...o, replay }), wire), 'OHTTP_REPLAY');
  });
});

describe('streams', () => {
  it('the first chunk is readable before the last is produced', async () => {
    const gk = await generateKeyConfig(11);
    const s = await encapsulateChunkedRequest(gk.config);
    const g = decapsulateChunkedRequest([gk]);
    await openAll(g, cat(await sealAll(s, [te.encode('q')])));
    const sealer = sealStream(await g.sealResponse());
    const opener = openStream(s.openResponse());
    // gateway plaintext -> sealer -> (relay) -> opener -> client plaintext
    void sealer.readable.pipeTo(opener.writable);
    const w = sealer.writable.getWriter();
    const r = opener.readable.getReader();
    await w.write(te.encode('first token'));
    const first = await r.read();
    expect(new TextDecoder().decode(first.value)).toBe('first token');
    await w.write(te.encode('second token'));
    expect(new TextDecoder().decode((await r.read()).value)).toBe('second token');
    await w.close();
    expect((await r.read()).done).toBe(true);
  });

  it('a stream truncated by the relay errors instead of ending cleanly', async () => {
    const gk = await generateKeyConfig(12);
    const s = await encapsulateChunkedRequest(gk.config);
    const g = decapsulateChunkedRequest([gk]);
    await openAll(g, cat(await sealAll(s, [te.encode('q')])));
    const rs = await g.sealResponse();
    const partial = cat([await rs.sealChunk(te.encode('a')), await rs.sealChunk(te.encode('b'))]);
    const src = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(partial);
        c.close();
      },
    });
    const got: string[] = [];
    const err = await src
      .pipeThrough(openStream(s.openResponse()))
      .pipeTo(new WritableStream({ write: (x) => void got.push(new TextDecoder().decode(x)) }))
      .then(() => undefined, (e: unknown) => e);
    expect(got).toEqual(['a', 'b']);
    expect(err).toMatchObject({ code: 'CHUNKED_TRUNCATED' });
  });
});
