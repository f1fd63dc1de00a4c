/**
 * Which resource keeps a kernel identity two resources ask for: the older one (by
 * creationTimestamp, then kind and name). The controller reports the younger as Conflict and
 * every agent gives the older one precedence, so both sides agree without talking.
 */
import type { IpsecResource } from '../crd/types.js';

export function resourceName(resource: Pick<IpsecResource, 'kind' | 'metadata'>): string {
  return `${resource.kind}/${resource.metadata.name}`;
}

export function compareResourceAge(a: IpsecResource & { metadata: { creationTimestamp?: string } }, b: IpsecResource & { metadata: { creationTimestamp?: string } }): number {
  const timeA = a.metadata.creationTimestamp ?? '';
  const timeB = b.metadata.creationTimestamp ?? '';
  if (timeA !== timeB) return timeA < timeB ? -1 : 1;
  const nameA = resourceName(a);
  const nameB = resourceName(b);
  return nameA < nameB ? -1 : nameA > nameB ? 1 : 0;
}
