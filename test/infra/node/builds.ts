// The two builds the node layer runs on: the node's binaries (scripts/build-node.sh: kubelet,
// kube-controller-manager, kube-scheduler, containerd 2, the pause image) and the operator's
// image (scripts/build-image.sh, `make image`). Both scripts are cached by a hash of their inputs,
// so running them here costs seconds when nothing changed, and a stale build is never used.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../controlplane/binaries.js';

export interface NodeBinaries {
  dir: string;
  /** Multi-call binary: `ipsec-node kubelet|kube-controller-manager|kube-scheduler ARGS`. */
  kube: string;
  containerd: string;
  shim: string;
  ctr: string;
  /** OCI archive of the sandbox image, and its reference. */
  pauseArchive: string;
  pauseRef: string;
  versions: { kubernetes: string; containerd: string; runc: string; go: string };
}

export interface OperatorImage {
  /** OCI archive of the image built from the Dockerfile. */
  archive: string;
  /** localhost/ipsec-operator:<tag> */
  reference: string;
  repository: string;
  tag: string;
  digest: string;
}

function cacheDir(): string {
  return process.env.IPSEC_OPERATOR_CACHE || join(homedir(), '.cache', 'ipsec-operator');
}

/** Runs a build script; resolves with the last line it logged, rejects with its log tail. */
function runScript(script: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(join(REPO_ROOT, script), [], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.once('error', (err) => reject(new Error(`could not run ${script}: ${err.message}`)));
    child.once('close', (code) => {
      if (code === 0) resolvePromise(output.trim().split('\n').at(-1) ?? '');
      else reject(new Error(`${script} failed (exit ${code}):\n${output.split('\n').slice(-40).join('\n')}`));
    });
  });
}

export async function buildNodeBinaries(): Promise<NodeBinaries> {
  await runScript('scripts/build-node.sh');
  const dir = join(cacheDir(), 'node', 'current');
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as NodeBinaries['versions'] & { pause: string };
  return {
    dir,
    kube: join(dir, 'ipsec-node'),
    containerd: join(dir, 'containerd'),
    shim: join(dir, 'containerd-shim-runc-v2'),
    ctr: join(dir, 'ctr'),
    pauseArchive: join(dir, 'pause.oci.tar'),
    pauseRef: manifest.pause,
    versions: { kubernetes: manifest.kubernetes, containerd: manifest.containerd, runc: manifest.runc, go: manifest.go },
  };
}

export async function buildOperatorImage(): Promise<OperatorImage> {
  await runScript('scripts/build-image.sh');
  const dir = join(cacheDir(), 'image', 'current');
  const info = JSON.parse(readFileSync(join(dir, 'image.json'), 'utf8')) as { reference: string; digest: string };
  const colon = info.reference.lastIndexOf(':');
  return {
    archive: join(dir, 'ipsec-operator.oci.tar'),
    reference: info.reference,
    repository: info.reference.slice(0, colon),
    tag: info.reference.slice(colon + 1),
    digest: info.digest,
  };
}
