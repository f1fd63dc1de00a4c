/**
 * `import`: every SA and policy of the namespace — owned or not — as manifests, plus the one
 * Secret holding their keys. Applying the output into an empty namespace reproduces what
 * `ip xfrm state` and `ip xfrm policy` show. The output contains key material by design:
 * treat it as you would the Secret.
 */
import { stringify } from 'yaml';
import { openKernelTables } from '../engine/kernel.js';
import { readDevices } from '../engine/devices.js';
import { exportEntries } from '../model/export.js';

export async function runImport(options: { readonly netns: string | undefined }): Promise<number> {
  const kernel = await openKernelTables(options.netns);
  try {
    const [observed, devices] = await Promise.all([kernel.dump(), readDevices(options.netns)]);
    const exported = exportEntries(observed.states, observed.policies, (ifindex) => devices.nameByIndex.get(ifindex));
    const documents = [...(Object.keys(exported.secret.data).length > 0 ? [exported.secret] : []), ...exported.resources];
    process.stdout.write(documents.map((document) => stringify(document, { lineWidth: 0 })).join('---\n'));
    if (kernel.skipped() > 0) {
      process.stderr.write(`ipsec-operator: ${kernel.skipped()} entr${kernel.skipped() === 1 ? 'y' : 'ies'} outside the model (e.g. socket policies) not imported\n`);
    }
    return 0;
  } finally {
    kernel.close();
  }
}
