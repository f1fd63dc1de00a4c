/**
 * Label selector matching (metav1.LabelSelector semantics): every matchLabels entry and every
 * matchExpressions requirement must hold. An absent selector selects every node.
 */
import type { LabelSelector } from '../crd/types.js';

export function selectsNode(selector: LabelSelector | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (!selector) return true;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const requirement of selector.matchExpressions ?? []) {
    const present = Object.prototype.hasOwnProperty.call(labels, requirement.key);
    const value = labels[requirement.key];
    const values = requirement.values ?? [];
    switch (requirement.operator) {
      case 'In':
        if (!present || !values.includes(value!)) return false;
        break;
      case 'NotIn':
        if (present && values.includes(value!)) return false;
        break;
      case 'Exists':
        if (!present) return false;
        break;
      case 'DoesNotExist':
        if (present) return false;
        break;
    }
  }
  return true;
}
