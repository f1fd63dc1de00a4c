/**
 * List uniqueness as the API server enforces it for structural schemas: a list marked
 * `x-kubernetes-list-type: set` (or `uniqueItems`) may not hold a value twice, a `map` list not
 * two items with the same keys (`x-kubernetes-list-map-keys`). Ajv knows neither keyword.
 */
import { quoted } from './echo.js';
import type { Schema } from './schema.js';

export interface ListProblem {
  readonly path: string;
  readonly message: string;
}

/** Walks `schema` and `value` together; tolerant of values of the wrong type (Ajv reports those). */
export function listProblems(schema: Schema, value: unknown, path: string): ListProblem[] {
  const problems: ListProblem[] = [];
  walk(schema, value, path, problems);
  return problems;
}

function walk(schema: Schema, value: unknown, path: string, problems: ListProblem[]): void {
  if (value === null || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    const listType = schema['x-kubernetes-list-type'];
    const mapKeys = schema['x-kubernetes-list-map-keys'] as string[] | undefined;
    const seen = new Map<string, number>();
    value.forEach((item, index) => {
      let identity: string | undefined;
      if (listType === 'set' || schema['uniqueItems'] === true) identity = JSON.stringify(item);
      else if (listType === 'map' && mapKeys && item !== null && typeof item === 'object') {
        identity = JSON.stringify(mapKeys.map((key) => (item as Record<string, unknown>)[key] ?? null));
      }
      if (identity !== undefined) {
        if (seen.has(identity)) {
          const shown = listType === 'map' ? `item with the same ${mapKeys!.join(', ')} as [${seen.get(identity)}]` : `value ${quoted(item)}`;
          problems.push({ path: `${path}[${index}]`, message: `duplicate ${shown}` });
        } else {
          seen.set(identity, index);
        }
      }
      const items = schema['items'] as Schema | undefined;
      if (items) walk(items, item, `${path}[${index}]`, problems);
    });
    return;
  }
  const properties = schema['properties'] as Record<string, Schema> | undefined;
  if (properties) {
    for (const [name, child] of Object.entries(properties)) walk(child, (value as Record<string, unknown>)[name], `${path}.${name}`, problems);
  }
}
