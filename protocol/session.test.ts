/**
 * The enclave → worker session (session.ts): handshake to X-Wing and X25519 configurations on both backends, and
 * the record layer's failures: tampering, replay, reordering, dropping, truncation, extension, wrong keys, rekeying.
 */
import { describe, expect, it } from 'vitest';
import { concat } from '../attestation/bytes.ts';
import { webCryptoBackend, type CryptoBackend } from './backend.ts';
import { KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256 } from './hpke.ts';
import { nodeBackend } from './node/backend-node.ts';
import { type GatewayKey, generateKeyConfig } from './ohttp.ts';
import { acceptSession, initiateSession, REPLAY_WINDOW, type Session, type SessionResponder, sessionIdOf } from './session.ts';

const te = new TextEncoder();
const td = new TextDecoder();
const KID = '0123456789abcdef';
const credential = new Uint8Array(32).fill(7);

async function pair(key: GatewayKey, backend: CryptoBackend = nodeBackend, o: { workerCredential?: Uint8Array; workerId?: string } = {}): Promise<{ session: Session; responder: SessionResponder }> {
  const h = await initiateSession(key.config, 'w-1', credential, { kid: KID, backend });
  const a = await acceptSession([key], o.workerId ?? 'w-1', o.workerCredential ?? credential, KID, h.init, { backend });
  return { session: await h.finish(a.reply), responder: a.responder };
}

const codeOf = (p: Promise<unknown>) => p.then(() => 'resolved', (e: { code?: string }) => e.code);

describe('session handshake', () => {
  for (const backend of [nodeBackend, webCryptoBackend]) {
    for (const kemId of [KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256]) {
      it(`carries a request and a streamed response (${backend.name}, kem 0x${kemId.toString(16)})`, async () => {
        const key = await generateKeyConfig(3, undefined, { kemId, backend });
        const { session, responder } = await pair(key, backend);
        expect(session.id).toEqual(responder.id);
        const { message, response } = await session.seal(te.encode('prompt'), true);
        expect(sessionIdOf(message)).toEqual(session.id);
        const got = await responder.open(message);
        expect(td.decode(got.request)).toBe('prompt');
        expect(got.stream).toBe(true);
        const wire = concat(await got.response.seal(te.encode('to')), await got.response.seal(te.encode('ken')), await got.response.seal(te.encode('s'), true));
        // Split anywhere: records are reassembled across reads.
        const out = [...(await response.push(wire.subarray(0, 7))), ...(await response.push(wire.subarray(7)))];
        expect(out.map((x) => td.decode(x)).join('')).toBe('tokens');
        response.end();
      });
    }
  }

  it('a wrong credential gives different keys: the enclave refuses the confirmation', async () => {
    const key = await generateKeyConfig(3);
    expect(await codeOf(pair(key, nodeBackend, { workerCredential: new Uint8Array(32).fill(8) }))).toBe('SESSION_CONFIRM_FAILED');
  });

  it('a worker id other than the one attested gives different keys', async () => {
    const key = await generateKeyConfig(3);
    expect(await codeOf(pair(key, nodeBackend, { workerId: 'w-2' }))).toBe('SESSION_CONFIRM_FAILED');
  });

  it('a key the worker does not hold is refused by key id; the same id with another key fails the confirmation', async () => {
    const key = await generateKeyConfig(3);
    const other = await generateKeyConfig(4);
    const h = await initiateSession(key.config, 'w-1', credential, { kid: KID });
    expect(await codeOf(acceptSession([other], 'w-1', credential, KID, h.init))).toBe('OHTTP_UNKNOWN_KEY_ID');
    const impostor = await generateKeyConfig(3);
    const a = await acceptSession([impostor], 'w-1', credential, KID, h.init);
    expect(await codeOf(h.finish(a.reply))).toBe('SESSION_CONFIRM_FAILED');
  });

  it('a flipped confirmation byte or a short reply is refused', async () => {
    const key = await generateKeyConfig(3);
    const h = await initiateSession(key.config, 'w-1', credential, { kid: KID });
    const a = await acceptSession([key], 'w-1', credential, KID, h.init);
    const bad = a.reply.slice();
    bad[40]! ^= 1;
    expect(await codeOf(h.finish(bad))).toBe('SESSION_CONFIRM_FAILED');
    expect(await codeOf(h.finish(a.reply.subarray(1)))).toBe('SESSION_CONFIRM_FAILED');
  });

  it('a replayed init makes a session with other keys: old records do not open under it', async () => {
    const key = await generateKeyConfig(3);
    const h = await initiateSession(key.config, 'w-1', credential, { kid: KID });
    const a = await acceptSession([key], 'w-1', credential, KID, h.init);
    const session = await h.finish(a.reply);
    const { message } = await session.seal(te.encode('x'), false);
    const replayed = await acceptSession([key], 'w-1', credential, KID, h.init);
    expect(replayed.responder.id).not.toEqual(session.id);
    expect(await codeOf(replayed.responder.open(message))).toBe('SESSION_MALFORMED');
  });
});

describe('session records', () => {
  it('a flipped byte anywhere in a request fails; the untouched request then still opens once', async () => {
    const { session, responder } = await pair(await generateKeyConfig(3));
    const { message } = await session.seal(te.encode('{"model":"m"}'), false);
    for (const i of [1, 20, 26, message.length - 1]) {
      const bad = message.slice();
      bad[i]! ^= 0x01;
      expect(await codeOf(responder.open(bad)), `byte ${i}`).toMatch(/^SESSION_(DECRYPT_FAILED|MALFORMED)$/);
    }
    expect(td.decode((await responder.open(message)).request)).toBe('{"model":"m"}');
  });

  it('a request replayed is refused, in any order, and numbers far behind the highest are refused', async () => {
    const { session, responder } = await pair(await generateKeyConfig(3));
    const a = await session.seal(te.encode('a'), false);
    const b = await session.seal(te.encode('b'), false);
    await responder.open(b.message); // arrives first (another connection)
    await responder.open(a.message);
    expect(await codeOf(responder.open(a.message))).toBe('SESSION_REPLAY');
    expect(await codeOf(responder.open(b.message))).toBe('SESSION_REPLAY');
    const old = await session.seal(te.encode('old'), false);
    for (let i = 0; i < REPLAY_WINDOW; i++) await session.seal(te.encode('.'), false); // numbers used by nobody
    const last = await session.seal(te.encode('last'), false);
    await responder.open(last.message);
    expect(await codeOf(responder.open(old.message))).toBe('SESSION_REPLAY');
  });

  it('response records reordered, dropped, duplicated, cut short or extended fail', async () => {
    const { session, responder } = await pair(await generateKeyConfig(3));
    const mk = async () => {
      const s = await session.seal(te.encode('q'), true);
      const o = await responder.open(s.message);
      const r = [await o.response.seal(te.encode('1')), await o.response.seal(te.encode('2')), await o.response.seal(te.encode('3'), true)];
      return { opener: s.response, r };
    };
    const push = async (o: Awaited<ReturnType<typeof mk>>['opener'], parts: Uint8Array[]) => {
      for (const p of parts) await o.push(p);
      o.end();
    };
    let x = await mk();
    expect(await codeOf(push(x.opener, [x.r[1]!, x.r[0]!, x.r[2]!]))).toBe('SESSION_DECRYPT_FAILED');
    x = await mk();
    expect(await codeOf(push(x.opener, [x.r[0]!, x.r[2]!]))).toBe('SESSION_DECRYPT_FAILED');
    x = await mk();
    expect(await codeOf(push(x.opener, [x.r[0]!, x.r[0]!, x.r[1]!, x.r[2]!]))).toBe('SESSION_DECRYPT_FAILED');
    x = await mk();
    expect(await codeOf(push(x.opener, [x.r[0]!, x.r[1]!]))).toBe('SESSION_TRUNCATED');
    x = await mk();
    expect(await codeOf(push(x.opener, [x.r[0]!, x.r[1]!, x.r[2]!.subarray(0, 10)]))).toBe('SESSION_TRUNCATED');
    x = await mk();
    expect(await codeOf(push(x.opener, [...x.r, x.r[0]!]))).toBe('SESSION_DECRYPT_FAILED');
    // A non-final record relabelled final (its flag byte) does not authenticate: the end cannot be forged.
    x = await mk();
    const forged = x.r[1]!.slice();
    forged[0] = 1;
    expect(await codeOf(push(x.opener, [x.r[0]!, forged]))).toBe('SESSION_DECRYPT_FAILED');
    x = await mk();
    await push(x.opener, x.r);
  });

  it("records of one request do not open as another request's, nor in the other direction", async () => {
    const { session, responder } = await pair(await generateKeyConfig(3));
    const a = await session.seal(te.encode('a'), false);
    const b = await session.seal(te.encode('b'), false);
    const oa = await responder.open(a.message);
    const rec = await oa.response.seal(te.encode('answer to a'), true);
    expect(await codeOf(b.response.push(rec))).toBe('SESSION_DECRYPT_FAILED');
    // The request's ciphertext under the response key: the directions have separate keys and nonces.
    const asRecord = concat(Uint8Array.of(1, 0, 0, 0, a.message.length - 26), a.message.subarray(26));
    const c = await session.seal(te.encode('c'), false);
    expect(await codeOf(c.response.push(asRecord))).toBe('SESSION_DECRYPT_FAILED');
  });

  it('rekeying: a new session has independent keys; requests of the old one do not open under it', async () => {
    const key = await generateKeyConfig(3);
    const first = await pair(key);
    const second = await pair(key);
    expect(second.session.id).not.toEqual(first.session.id);
    const m = await first.session.seal(te.encode('x'), false);
    // Same request number (0) in both: the message names the first session, and its bytes do not open under the second.
    const relabelled = m.message.slice();
    relabelled.set(second.session.id, 2);
    expect(await codeOf(second.responder.open(m.message))).toBe('SESSION_MALFORMED');
    expect(await codeOf(second.responder.open(relabelled))).toBe('SESSION_DECRYPT_FAILED');
    expect(td.decode((await first.responder.open(m.message)).request)).toBe('x');
  });
});
