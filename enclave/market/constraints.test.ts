import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { expectCode } from '../../test/market-fixtures.ts';
import { parameterMask } from '../../protocol/model-identity.ts';
import { decimalToMicros, parseRouteConstraints, requestParameters } from './constraints.ts';

describe('decimalToMicros (max_price, exact from the decimal text)', () => {
  it.each([
    [0.1, 100_000n],
    [1.5, 1_500_000n],
    ['2', 2_000_000n],
    ['0.000001', 1n],
    ['1.2345678', 1_234_567n], // digits past the sixth decimal are dropped: the ceiling only gets lower
    [1e-7, 0n],
    [0, 0n],
    ['  3.25 ', 3_250_000n],
  ])('%s → %s', (v, micros) => {
    expect(decimalToMicros(v, 'x')).toBe(micros);
  });

  it.each([[-1], ['-1'], [Number.NaN], [Infinity], ['1e3'], ['0x10'], ['1,5'], [true], [null]])('rejects %s', async (v) => {
    await expectCode(() => decimalToMicros(v, 'x'), 'ROUTE_CONSTRAINT_INVALID');
  });

  it('agrees with integer arithmetic on every six-decimal number (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10 ** 12 }), (m) => {
        const s = `${Math.floor(m / 1e6)}.${String(m % 1e6).padStart(6, '0')}`;
        expect(decimalToMicros(s, 'x')).toBe(BigInt(m));
        expect(decimalToMicros(Number(s), 'x')).toBe(BigInt(m));
      }),
    );
  });
});

describe('parseRouteConstraints', () => {
  it('defaults: price sort, fallbacks allowed, every payment term, USD', () => {
    const c = parseRouteConstraints({ model: 'm', messages: [{ role: 'user', content: 'héllo' }] });
    expect(c).toMatchObject({ models: ['m'], poolMode: 'single', sort: 'price', allowFallbacks: true, maxPriceCurrency: 'USD', expectedInputTokens: 2, maxInputTokens: 30, maxOutputTokens: 4096 });
    expect([...c.acceptTerms].sort()).toEqual(['per-request', 'postpaid', 'prepaid']);
  });

  it('reads the OpenRouter provider object and gm payment', () => {
    const c = parseRouteConstraints({
      model: 'm',
      max_completion_tokens: 77,
      max_tokens: 5,
      provider: { sort: 'throughput', max_price: { prompt: 1, completion: '2.5', currency: 'TAO' }, order: ['a'], only: ['a', 'b'], ignore: ['c'], allow_fallbacks: false },
      payment: { terms: ['postpaid'], currency: 'TAO' },
    });
    expect(c).toMatchObject({ sort: 'throughput', maxPricePerMInput: 1_000_000_000n, maxPricePerMOutput: 2_500_000_000n, maxPriceCurrency: 'TAO', order: ['a'], allowFallbacks: false, paymentCurrency: 'TAO', maxOutputTokens: 77 });
    expect([...c.only!]).toEqual(['a', 'b']);
    expect([...c.acceptTerms]).toEqual(['postpaid']);
  });

  it('counts prompt text in chat parts, completions prompts and embeddings input', () => {
    expect(parseRouteConstraints({ model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: 'abcd' }, { type: 'text', text: 'efgh' }] }] }).expectedInputTokens).toBe(2);
    expect(parseRouteConstraints({ model: 'm', prompt: 'x'.repeat(40) }).expectedInputTokens).toBe(10);
    expect(parseRouteConstraints({ model: 'm', input: ['ab', 'cd'] }).maxInputTokens).toBe(20);
  });

  it('pools: the request list, configured aliases and their strategies', () => {
    const pools = { fast: ['a', 'b'] };
    expect(parseRouteConstraints({ model: 'default', models: ['x', 'y', 'x'] })).toMatchObject({ models: ['x', 'y'], poolMode: 'ordered' });
    expect(parseRouteConstraints({ model: 'default:latency', models: ['x'] })).toMatchObject({ poolMode: 'latency' });
    expect(parseRouteConstraints({ model: 'fast:throughput' }, { pools })).toMatchObject({ models: ['a', 'b'], poolMode: 'throughput' });
    expect(parseRouteConstraints({ model: 'z', models: ['x'] })).toMatchObject({ models: ['z', 'x'], poolMode: 'ordered' });
    expect(parseRouteConstraints({ model: 'vendor/model:latency' })).toMatchObject({ models: ['vendor/model:latency'], poolMode: 'single' });
  });

  it.each([
    ['no model', {}],
    ['default without a pool', { model: 'default' }],
    ['21 models', { model: 'default', models: Array.from({ length: 21 }, (_, i) => `m${i}`) }],
    ['empty models', { model: 'default', models: [] }],
    ['unknown sort', { model: 'm', provider: { sort: 'cheapest' } }],
    ['float max_price as text', { model: 'm', provider: { max_price: { prompt: '1e-3' } } }],
    ['allow_fallbacks not boolean', { model: 'm', provider: { allow_fallbacks: 'no' } }],
    ['unknown payment term', { model: 'm', payment: { terms: ['credit'] } }],
    ['max_tokens zero', { model: 'm', max_tokens: 0 }],
    ['provider not an object', { model: 'm', provider: [] }],
  ])('%s → ROUTE_CONSTRAINT_INVALID', async (_n, body) => {
    await expectCode(() => parseRouteConstraints(body), 'ROUTE_CONSTRAINT_INVALID');
  });

  it('errors never quote request text', () => {
    try {
      parseRouteConstraints({ model: 'm', messages: [{ content: 'secret words' }], provider: { sort: 'secret words' } });
    } catch (e) {
      expect((e as Error).message).not.toContain('secret');
      return;
    }
    expect.unreachable();
  });
});

describe('OpenRouter provider fields: honoured or refused by name', () => {
  const param = (body: unknown): string | undefined => {
    try {
      parseRouteConstraints(body);
    } catch (e) {
      expect((e as { code: string }).code).toBe('ROUTE_CONSTRAINT_INVALID');
      return (e as { param?: string }).param;
    }
    return undefined;
  };
  it('data_collection "deny" and "allow" hold (every worker is an attested TEE); require_parameters false is accepted', () => {
    expect(param({ model: 'm', provider: { data_collection: 'deny' } })).toBeUndefined();
    expect(param({ model: 'm', provider: { data_collection: 'allow', require_parameters: false } })).toBeUndefined();
  });
  it('quantizations, weights_digests and require_parameters are parsed into the constraints', () => {
    const digest = 'AB'.repeat(32);
    const c = parseRouteConstraints({ model: 'm', tools: [{ type: 'function' }], response_format: { type: 'json_object' }, temperature: null, provider: { quantizations: ['fp8', 'int4'], weights_digests: [digest], require_parameters: true } });
    expect([...c.quantizations!]).toEqual(['fp8', 'int4']);
    expect([...c.weightsDigests!]).toEqual(['ab'.repeat(32)]);
    // tools and response_format are present; a null temperature is absent (as OpenAI reads it).
    expect(c.requiredParameters).toBe(parameterMask(['tools', 'response_format']));
    expect(requestParameters({ functions: [], function_call: 'auto', seed: 1 }).sort()).toEqual(['seed', 'tool_choice', 'tools']);
    expect(parseRouteConstraints({ model: 'm', tools: [] }).requiredParameters).toBe(0);
  });
  it('refuses what it cannot honour, naming the field in param', () => {
    expect(param({ model: 'm', provider: { quantizations: [] } })).toBe('provider.quantizations');
    expect(param({ model: 'm', provider: { quantizations: ['FP8!'] } })).toBe('provider.quantizations');
    expect(param({ model: 'm', provider: { weights_digests: ['abcd'] } })).toBe('provider.weights_digests');
    expect(param({ model: 'm', provider: { require_parameters: 'yes' } })).toBe('provider.require_parameters');
    expect(param({ model: 'm', provider: { data_collection: 'sometimes' } })).toBe('provider.data_collection');
    expect(param({ model: 'm', provider: { zdr: true } })).toBe('provider.zdr');
    expect(param({ model: 'm', provider: { sort: 'fastest' } })).toBe('provider.sort');
    expect(param({ model: 'm', provider: { max_price: { prompt: 'x' } } })).toBe('provider.max_price.prompt');
  });
});
