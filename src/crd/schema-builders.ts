/**
 * Builders for the OpenAPI v3 schemas of the CRDs (./schema.ts for the entry kinds and
 * IpsecNodeState, ./mesh-schema.ts for IpsecMesh), so that a field type is written the same
 * way in both. Objects are not here: the entry kinds close theirs (additionalProperties: false,
 * so a typo in a manifest is an error before the model sees it) and the mesh's are left to the
 * apiserver's pruning; each module keeps its own `obj`.
 */
export type Schema = Record<string, unknown>;

export const str = (description: string, extra: Schema = {}): Schema => ({ type: 'string', description, ...extra });
export const int = (description: string, minimum: number, maximum: number, extra: Schema = {}): Schema => ({
  type: 'integer',
  description,
  minimum,
  maximum,
  ...extra,
});
export const bool = (description: string, extra: Schema = {}): Schema => ({ type: 'boolean', description, ...extra });
export const oneOf = (description: string, values: readonly string[], extra: Schema = {}): Schema => ({
  type: 'string',
  description,
  enum: [...values],
  ...extra,
});
export const list = (description: string, items: Schema, extra: Schema = {}): Schema => ({ type: 'array', description, items, ...extra });
export const rule = (expression: string, message: string, extra: Schema = {}) => ({ rule: expression, message, ...extra });

/** A metav1.Condition, with the condition types and the message's promise of the kind that uses it. */
export function conditionSchema(typeDescription: string, messageDescription: string): Schema {
  return {
    type: 'object',
    description: 'A metav1.Condition.',
    required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
    properties: {
      type: str(typeDescription, { maxLength: 316 }),
      status: oneOf('Status.', ['True', 'False', 'Unknown']),
      observedGeneration: int('Generation the condition was set for.', 0, Number.MAX_SAFE_INTEGER),
      lastTransitionTime: str('When the status last changed.', { format: 'date-time' }),
      reason: str('CamelCase reason.', { maxLength: 1024, minLength: 1 }),
      message: str(messageDescription, { maxLength: 32768 }),
    },
  };
}
