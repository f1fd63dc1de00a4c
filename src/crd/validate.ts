/**
 * Local validation of resources against the CRDs' own schema and CEL rules, so that the CLI
 * refuses what the API server would refuse, before anything touches a kernel.
 *
 * Structure and ranges are checked by Ajv against the OpenAPI schema objects of ./schema.ts;
 * every `x-kubernetes-validations` rule is evaluated with a CEL interpreter, using the same
 * expression strings the API server runs.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parse as parseCel, type ParseResult } from '@marcbachmann/cel-js';
import { ipsecPolicySpec, securityAssociationSpec, type Schema } from './schema.js';
import { listProblems } from './lists.js';
import { isPlainFieldName, quoted } from './echo.js';

export interface FieldError {
  /** Dotted path from the document root, e.g. `spec.templates[0].mode`. */
  readonly path: string;
  readonly message: string;
}

// validateSchema off: checking our own schemas against Ajv's meta-schema compiled the meta-schema
// in every CLI process (~0.3 s idle, 1.3 s of an 8 s `diff` under load, profiled); the schemas
// are this project's constants, checked once in test/unit/crd-validate-schema.test.ts instead.
const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false, validateSchema: false });
for (const keyword of [
  'x-kubernetes-validations',
  'x-kubernetes-int-or-string',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
  'x-kubernetes-preserve-unknown-fields',
]) {
  ajv.addKeyword(keyword);
}

const compiled = new Map<Schema, ValidateFunction>();
function validatorFor(schema: Schema): ValidateFunction {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  return validate;
}

export const SPEC_SCHEMAS = {
  SecurityAssociation: securityAssociationSpec,
  IpsecPolicy: ipsecPolicySpec,
} as const;

export type SpecKind = keyof typeof SPEC_SCHEMAS;

/** Validates `spec` of a resource of `kind`; returns every problem found (none = valid). */
export function validateSpec(kind: SpecKind, spec: unknown): FieldError[] {
  const schema = SPEC_SCHEMAS[kind];
  const validate = validatorFor(schema);
  // Duplicates in set-type lists: the API server refuses them; Ajv has no keyword for it.
  const duplicates = listProblems(schema, spec, 'spec');
  if (!validate(spec)) {
    return [...(validate.errors ?? []).map((error) => ({ path: joinPath('spec', pointerToPath(error.instancePath)), message: describe(error) })), ...duplicates];
  }
  // CEL rules run only on structurally valid objects, as the API server does.
  return [...duplicates, ...celErrors(schema, spec, 'spec')];
}

function describe(error: ErrorObject): string {
  switch (error.keyword) {
    case 'additionalProperties':
      return `unknown field ${quoted(String(error.params['additionalProperty']))}`;
    case 'required':
      return `required field ${quoted(String(error.params['missingProperty']))} is missing`;
    case 'enum':
      return `must be one of ${(error.params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    default:
      return error.message ?? error.keyword;
  }
}

function pointerToPath(pointer: string): string {
  if (pointer === '') return '';
  return pointer
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    // Keys the user wrote (matchLabels keys, for one) are quoted and capped, never spelled out.
    .map((part) => (/^\d+$/.test(part) ? `[${part}]` : isPlainFieldName(part) ? part : `[${quoted(part)}]`))
    .reduce((path, part) => (part.startsWith('[') ? `${path}${part}` : path === '' ? part : `${path}.${part}`), '');
}

function joinPath(base: string, rest: string): string {
  if (rest === '') return base;
  return rest.startsWith('[') ? `${base}${rest}` : `${base}.${rest}`;
}

interface CelRule {
  rule: string;
  message: string;
}

/** Each rule is parsed once per process, not once per document (10,000 documents: ~0.5 s → ~0). */
const celPrograms = new Map<string, ParseResult>();
function celProgram(rule: string): ParseResult {
  let program = celPrograms.get(rule);
  if (!program) {
    program = parseCel(rule);
    celPrograms.set(rule, program);
  }
  return program;
}

/** Walks schema and value together and evaluates every CEL rule where the value is present. */
function celErrors(schema: Schema, value: unknown, path: string): FieldError[] {
  if (value === undefined || value === null) return [];
  const errors: FieldError[] = [];
  const properties = schema['properties'] as Record<string, Schema> | undefined;
  if (properties && typeof value === 'object' && !Array.isArray(value)) {
    for (const [name, child] of Object.entries(properties)) {
      errors.push(...celErrors(child, (value as Record<string, unknown>)[name], `${path}.${name}`));
    }
  }
  const items = schema['items'] as Schema | undefined;
  if (items && Array.isArray(value)) {
    value.forEach((element, index) => errors.push(...celErrors(items, element, `${path}[${index}]`)));
  }
  for (const { rule, message } of (schema['x-kubernetes-validations'] as CelRule[] | undefined) ?? []) {
    let holds: unknown;
    try {
      holds = celProgram(rule)({ self: value });
    } catch (error) {
      // A rule that cannot be evaluated is a bug in our schema, not in the user's input.
      throw new Error(`CEL rule ${JSON.stringify(rule)} failed to evaluate at ${path}: ${(error as Error).message}`);
    }
    if (holds !== true) errors.push({ path, message });
  }
  return errors;
}
