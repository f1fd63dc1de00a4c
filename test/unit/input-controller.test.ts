// The controller's verdicts on the corpus cases the API server accepts: each gets the corpus's
// reason, and no message that would go to status and Events holds any byte of a key (the
// cluster-side twin of input-corpus.test.ts; test/controlplane/invalid-input.test.ts does the
// same on objects as the real apiserver returns them, the e2e through the running controller).
import { describe, expect, it } from 'vitest';
import { judge, viewFacts, type ClusterView } from '../../src/controller/analysis.js';
import { parseManifests } from '../../src/model/manifests.js';
import { CORPUS, SECRET, keyFingerprints, type MalformedCase } from './fixtures/malformed/corpus.js';

const accepted = CORPUS.filter((entry): entry is MalformedCase & { cluster: { reason: string } } => typeof entry.cluster === 'object');

describe('controller verdicts on input the API server accepts', () => {
  it.each(accepted.map((entry) => [entry.name, entry] as [string, MalformedCase & { cluster: { reason: string } }]))('%s', (_name, entry) => {
    // The CLI refuses these documents; the cluster stores them, so build the view past that.
    const parsed = parseManifests([{ file: 'cluster.yaml', text: `${SECRET}---\n${entry.sent!}` }]);
    const resources = [...parsed.securityAssociations, ...parsed.policies].map(({ resource }) => ({ ...resource, metadata: { ...resource.metadata, generation: 1, creationTimestamp: '2026-12-02T00:00:00Z' } }));
    expect(resources.length, parsed.errors.map((error) => error.message).join('; ')).toBeGreaterThan(0);
    const view: ClusterView = { resources, nodes: new Map([['a', { 'ipsec.xfrm.io/node': 'a' }]]), secrets: parsed.secrets, reports: new Map() };
    const subject = resources.at(-1)!;
    const verdict = judge(subject, viewFacts(view));
    expect(verdict.ready).toBe(false);
    expect(verdict.reason, verdict.message).toBe(entry.cluster.reason);
    expect(verdict.message.length).toBeLessThanOrEqual(1025);
    for (const fingerprint of keyFingerprints()) expect(verdict.message.includes(fingerprint), fingerprint).toBe(false);
  });
});
