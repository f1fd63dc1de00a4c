// Where scripts/build-controlplane.sh put the control plane binaries, found by the same
// content key the script computes: a build of other sources is never used, the caller is
// told to rebuild instead.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, lstatSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** The inputs of the build, relative to the repo root. Keep in sync with build_key() in the script. */
const MODULE_DIRS = ['test/infra/controlplane', 'test/infra/helm'];
const BUILD_SCRIPT = 'scripts/build-controlplane.sh';

export interface ControlPlaneBinaries {
  /** Build directory: <cache>/controlplane/<key>. */
  dir: string;
  key: string;
  /** The multi-call binary; `serve` runs kube-apiserver over an embedded etcd. */
  controlPlane: string;
  /** kubectl of the same Kubernetes release (a symlink to the multi-call binary). */
  kubectl: string;
  helm: string;
  /** Versions the build pinned: {kubernetes, etcd, helm, go}. */
  versions: { kubernetes: string; etcd: string; helm: string; go: string };
}

export function cacheRoot(): string {
  // `||`, not `??`: the script treats an empty IPSEC_OPERATOR_CACHE as unset (${VAR:-default}).
  return join(process.env.IPSEC_OPERATOR_CACHE || join(homedir(), '.cache', 'ipsec-operator'), 'controlplane');
}

/**
 * sha256 over "<sha256 of file>  <path>\n" for every input sorted bytewise by path,
 * first 16 hex digits: exactly what `sha256sum` piped into `sha256sum` gives in the script.
 */
export function buildKey(repoRoot: string = REPO_ROOT): string {
  const files: string[] = [BUILD_SCRIPT];
  for (const dir of MODULE_DIRS) collectInputs(repoRoot, join(repoRoot, dir), files);
  files.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const outer = createHash('sha256');
  for (const file of files) {
    const inner = createHash('sha256').update(readFileSync(join(repoRoot, file))).digest('hex');
    outer.update(`${inner}  ${file}\n`);
  }
  return outer.digest('hex').slice(0, 16);
}

function collectInputs(repoRoot: string, dir: string, out: string[]): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    const st = lstatSync(path); // find -type f: symlinks are neither files nor followed
    if (st.isDirectory()) collectInputs(repoRoot, path, out);
    else if (st.isFile() && (entry.endsWith('.go') || entry === 'go.mod' || entry === 'go.sum')) {
      out.push(relative(repoRoot, path).split(sep).join('/'));
    }
  }
}

/** The binaries built from the current sources; throws, saying what to run, when there are none. */
export function controlPlaneBinaries(): ControlPlaneBinaries {
  const key = buildKey();
  const dir = join(cacheRoot(), key);
  if (!existsSync(join(dir, '.complete'))) {
    const current = join(cacheRoot(), 'current');
    const stale = existsSync(current) ? ` (the cache holds only builds of other sources, e.g. ${current})` : '';
    throw new Error(
      `No control plane build for the current sources (key ${key}) in ${dir}${stale}. ` +
        `Run scripts/build-controlplane.sh (cold: tens of minutes on 2 cores; warm: seconds).`,
    );
  }
  const versions = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as ControlPlaneBinaries['versions'];
  return {
    dir,
    key,
    controlPlane: join(dir, 'ipsec-controlplane'),
    kubectl: join(dir, 'kubectl'),
    helm: join(dir, 'helm'),
    versions,
  };
}

/** Path of the kubectl binary of the pinned Kubernetes release. */
export function kubectlPath(): string {
  return controlPlaneBinaries().kubectl;
}

/** Path of the pinned helm v3 binary. */
export function helmPath(): string {
  return controlPlaneBinaries().helm;
}
