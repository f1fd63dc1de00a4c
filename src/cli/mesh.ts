/**
 * `mesh rotate NAME`: ask the controller to rotate every member's keys of an IpsecMesh now, by
 * setting the `ipsec.xfrm.io/rotate` annotation (what `kubectl annotate ipsecmesh NAME
 * ipsec.xfrm.io/rotate=now` does). The controller acts on it once, rotates the members at most
 * rotation.maxConcurrent at a time, and removes the annotation. This module loads the
 * Kubernetes client; ./main.ts imports it only for this verb.
 */
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { MESH_ROTATE_ANNOTATION } from '../crd/mesh-schema.js';
import { API_GROUP, API_VERSION } from '../crd/types.js';
import { apiErrorSummary, apiStatusCode } from '../kube/api-errors.js';
import { loadKubeConfig } from '../kube/client.js';
import { UsageError } from './errors.js';

/** A DNS subdomain (the API server's rule for object names). */
const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export async function runMesh(options: { readonly args: readonly string[]; readonly kubeconfig: string | undefined }): Promise<number> {
  const [verb, name, ...extra] = options.args;
  if (verb !== 'rotate') throw new UsageError(verb === undefined ? 'mesh: which? (mesh rotate NAME)' : `mesh: unknown verb "${verb}" (mesh rotate NAME)`);
  if (name === undefined) throw new UsageError('mesh rotate: NAME of the IpsecMesh is required');
  if (extra.length > 0) throw new UsageError(`mesh rotate: one NAME only, got also ${extra.join(' ')}`);
  if (name.length > 253 || !NAME.test(name)) throw new UsageError(`mesh rotate: "${name}" is not a valid object name`);
  const kubeConfig = loadKubeConfig(options.kubeconfig === undefined ? {} : { path: options.kubeconfig });
  const api = kubeConfig.makeApiClient(CustomObjectsApi);
  try {
    await api.patchClusterCustomObject(
      { group: API_GROUP, version: API_VERSION, plural: 'ipsecmeshes', name, body: { metadata: { annotations: { [MESH_ROTATE_ANNOTATION]: 'now' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  } catch (error) {
    const status = apiStatusCode(error);
    if (status === 404) throw new Error(`ipsecmesh "${name}" not found (kubectl get ipsecmeshes lists them)`);
    if (status === 403) throw new Error(`not allowed to annotate ipsecmesh "${name}": the credentials need patch on ipsecmeshes.${API_GROUP} (${apiErrorSummary(error)})`);
    throw new Error(`cannot annotate ipsecmesh "${name}": ${apiErrorSummary(error)}`);
  }
  process.stdout.write(`ipsecmesh ${name}: rotation requested; the controller rotates every member (rotation.maxConcurrent at a time). Follow it with: kubectl get ipsecmesh ${name} -o wide\n`);
  return 0;
}
