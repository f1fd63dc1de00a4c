/**
 * src/crd/validate.ts compiles the spec schemas without checking them against the JSON Schema
 * meta-schema (that check cost every CLI process a third of a second); it is done here instead,
 * once, with the same keywords registered.
 */
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { SPEC_SCHEMAS, validateSpec } from '../../src/crd/validate.js';

describe('spec schemas', () => {
  const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
  for (const keyword of ['x-kubernetes-validations', 'x-kubernetes-int-or-string', 'x-kubernetes-list-type', 'x-kubernetes-list-map-keys', 'x-kubernetes-map-type', 'x-kubernetes-preserve-unknown-fields']) {
    ajv.addKeyword(keyword);
  }
  for (const [kind, schema] of Object.entries(SPEC_SCHEMAS)) {
    it(`${kind}: is a valid JSON Schema`, () => {
      expect(ajv.validateSchema(schema), JSON.stringify(ajv.errors)).toBe(true);
    });
  }

  it('the meta-schema check would catch a broken schema', () => {
    expect(ajv.validateSchema({ type: 'object', properties: { spi: { type: 'integr' } } })).toBe(false);
  });

  it('validation still refuses what the schema refuses', () => {
    const problems = validateSpec('IpsecPolicy', { direction: 'sideways', selector: { source: '10.0.0.1/32', destination: '10.0.0.2/32' } });
    expect(problems.map((problem) => problem.path)).toContain('spec.direction');
  });
});
