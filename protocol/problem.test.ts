import { describe, expect, it } from 'vitest';
import { protocolError, unavailable } from '../attestation/errors.ts';
import { PROBLEM_TYPE_OHTTP_KEY } from './media.ts';
import { errorFromProblem, problemFor } from './problem.ts';

describe('problem responses', () => {
  it('key configuration trouble is the RFC 9458 ohttp-key problem; the client maps it back to re-attest', () => {
    for (const code of ['OHTTP_UNKNOWN_KEY_ID', 'OHTTP_UNSUPPORTED_SUITE', 'OHTTP_KEY_EXPIRED']) {
      const p = problemFor(protocolError(code, 'x'));
      expect(p.status).toBe(400);
      expect(p.body).toEqual({ type: PROBLEM_TYPE_OHTTP_KEY, title: 'key configuration not accepted', status: 400, code: 'OHTTP_KEY_CONFIG' });
      expect(errorFromProblem(p.status, p.body).code).toBe('OHTTP_KEY_CONFIG');
    }
  });

  it('every decryption-side failure leaves as one opaque code, with no detail', () => {
    const codes = ['OHTTP_DECRYPT_FAILED', 'OHTTP_MALFORMED', 'OHTTP_REPLAY', 'HPKE_OPEN_FAILED', 'CHUNKED_REORDERED', 'CHUNKED_TRUNCATED', 'CHUNKED_EXTENDED', 'VARINT_RANGE'];
    const bodies = codes.map((c) => JSON.stringify(problemFor(protocolError(c, 'secret detail')).body));
    expect(new Set(bodies).size).toBe(1);
    expect(bodies[0]).not.toContain('secret');
    expect(JSON.parse(bodies[0]!)).toMatchObject({ status: 400, code: 'OHTTP_DECRYPT_FAILED' });
  });

  it('a full replay cache is a retryable 503; anything else a bare 500', () => {
    const busy = problemFor(unavailable('REPLAY_CACHE_FULL', 'x'));
    expect(busy.status).toBe(503);
    expect(busy.headers['retry-after']).toBe('1');
    expect(errorFromProblem(503, busy.body).kind).toBe('unavailable');
    expect(problemFor(new Error('boom')).body).toEqual({ type: 'about:blank', title: 'internal error', status: 500, code: 'INTERNAL' });
    expect(errorFromProblem(502, 'not json').code).toBe('OHTTP_BAD_PROBLEM');
  });
});
