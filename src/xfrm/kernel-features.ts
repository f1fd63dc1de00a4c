/**
 * Which XFRM attributes the running kernel keeps, and which fields of a desired SA depend on
 * them. Pure: the release string and the probe's answer come from the edge
 * (../engine/kernel.ts).
 *
 * Why this exists: xfrm_user parses requests leniently, so an attribute newer than the kernel
 * (type above its XFRMA_MAX) is skipped without an error. NEWSA then installs the SA without
 * it, the dump reports it without it, and a planner that compares desired with observed would
 * plan the same disruptive replace on every pass. So a desired field the kernel cannot keep is
 * refused before planning (reason KernelUnsupported), never sent.
 *
 * Sources: include/uapi/linux/xfrm.h (enum xfrm_attr_type_t) and net/xfrm/xfrm_user.c of each
 * release; /work/shared/notes/xfrm-semantics.md.
 */
import type { SecurityAssociation } from './types.js';

export type KernelFeature = 'sa-direction' | 'nat-keepalive' | 'sa-pcpu' | 'iptfs';

export interface KernelFeatureSpec {
  readonly feature: KernelFeature;
  /** For messages: the attribute the kernel must know. */
  readonly attribute: string;
  /** First mainline release that keeps it. */
  readonly since: readonly [major: number, minor: number];
  /**
   * The desired-SA field that needs it (its path in the SecurityAssociation spec) and whether
   * an SA uses it. Absent: the model cannot express the feature yet; listed so that node
   * reports and docs say what the kernel has.
   */
  readonly field?: { readonly path: string; readonly uses: (sa: SecurityAssociation) => boolean };
}

export const KERNEL_FEATURES: readonly KernelFeatureSpec[] = [
  {
    feature: 'sa-direction',
    attribute: 'XFRMA_SA_DIR (33)',
    since: [6, 10],
    field: { path: 'spec.direction', uses: (sa) => sa.direction !== undefined },
  },
  { feature: 'nat-keepalive', attribute: 'XFRMA_NAT_KEEPALIVE_INTERVAL (34)', since: [6, 11] },
  { feature: 'sa-pcpu', attribute: 'XFRMA_SA_PCPU (35)', since: [6, 13] },
  { feature: 'iptfs', attribute: 'XFRMA_IPTFS_* (36-41), mode iptfs', since: [6, 14] },
];

export interface KernelFeatures {
  /** `uname -r` (the same kernel serves every network namespace). */
  readonly release: string;
  readonly supported: ReadonlySet<KernelFeature>;
  /** How each feature was learned: a probe of the running kernel, or its release number. */
  readonly learnedBy: Readonly<Record<KernelFeature, 'probe' | 'release'>>;
}

/** `6.1.0-57-amd64` → [6, 1]; undefined when the release does not start with two numbers. */
export function parseKernelRelease(release: string): readonly [number, number] | undefined {
  const match = /^(\d+)\.(\d+)/.exec(release);
  return match ? [Number(match[1]), Number(match[2])] : undefined;
}

function atLeast(version: readonly [number, number], since: readonly [number, number]): boolean {
  return version[0] > since[0] || (version[0] === since[0] && version[1] >= since[1]);
}

/**
 * What a kernel of this release keeps, with the answers of probes overriding the release
 * (distribution kernels backport features; a probe asks the kernel itself). A release that
 * cannot be parsed is taken to keep nothing newer than 6.1: the refusal it may cause names
 * the release, while the opposite guess would replace SAs forever.
 */
export function kernelFeatures(release: string, probed: Partial<Record<KernelFeature, boolean>> = {}): KernelFeatures {
  const version = parseKernelRelease(release) ?? [0, 0];
  const supported = new Set<KernelFeature>();
  const learnedBy = {} as Record<KernelFeature, 'probe' | 'release'>;
  for (const spec of KERNEL_FEATURES) {
    const answer = probed[spec.feature];
    learnedBy[spec.feature] = answer === undefined ? 'release' : 'probe';
    if (answer ?? atLeast(version, spec.since)) supported.add(spec.feature);
  }
  return { release, supported, learnedBy };
}

export interface UnsupportedField {
  readonly feature: KernelFeature;
  /** Path in the SecurityAssociation spec, e.g. `spec.direction`. */
  readonly path: string;
  /** Names the field, the attribute, the release that brought it and the running release. */
  readonly message: string;
}

/** The fields of `sa` this kernel would silently drop. */
export function unsupportedFields(sa: SecurityAssociation, features: KernelFeatures): UnsupportedField[] {
  const result: UnsupportedField[] = [];
  for (const spec of KERNEL_FEATURES) {
    if (!spec.field || features.supported.has(spec.feature) || !spec.field.uses(sa)) continue;
    result.push({
      feature: spec.feature,
      path: spec.field.path,
      message:
        `kernel ${features.release} does not keep ${spec.field.path} (${spec.attribute} needs Linux ` +
        `${spec.since.join('.')} or later; an older kernel installs the SA without it): remove the field or run a newer kernel`,
    });
  }
  return result;
}
