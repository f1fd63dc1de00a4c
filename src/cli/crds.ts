import { stringify } from 'yaml';
import { renderCrds } from '../crd/schema.js';

/** The CRDs as one YAML stream, exactly what deploy/crds/ holds (a unit test compares them). */
export function crdsYaml(): string {
  return renderCrds()
    .map((crd) => stringify(crd, { lineWidth: 0 }))
    .join('---\n');
}

export function runCrds(): number {
  process.stdout.write(crdsYaml());
  return 0;
}
