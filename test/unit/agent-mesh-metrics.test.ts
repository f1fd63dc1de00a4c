// The agent's IpsecMesh metrics (src/agent/mesh-metrics.ts) from the reports of successive
// passes, read back through prom-client's text exposition as a scrape would see them.
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { MeshMetrics } from '../../src/agent/mesh-metrics.js';
import type { NodeMeshReport } from '../../src/crd/mesh-contract.js';
import { emptyAdvertisement } from '../../src/agent/mesh-progress.js';
import { metricValue } from '../support/metrics-text.js';

function report(mesh: string, fields: Partial<NodeMeshReport> & { generations?: number[] } = {}): NodeMeshReport {
  const { generations = [1], ...rest } = fields;
  return {
    mesh,
    uid: `uid-${mesh}`,
    advertisement: { ...emptyAdvertisement('a', 'boot-a'), generations: generations.map((generation) => ({ generation, publicKey: 'cHVibGlj' })) },
    expectedPeers: 2,
    readyPeers: 2,
    ...rest,
  } as NodeMeshReport;
}

const rotating = (requestId: string, generation: number) => ({ requestId, state: 'Rotating' as const, generation, startedAt: '2026-12-02T10:00:00Z' });
const done = (requestId: string, generation: number, completedAt: string) => ({ ...rotating(requestId, generation), state: 'Done' as const, completedAt });


describe('agent mesh metrics', () => {
  it('exports peers, sequence space, generation and rotating per mesh from the reports', async () => {
    const registry = new Registry();
    const metrics = new MeshMetrics(registry);
    metrics.record([report('m1', { expectedPeers: 2, readyPeers: 1, sequenceUsage: 0.25, generations: [1, 2], rotation: rotating('r1', 2) }), report('m2', { sequenceUsage: undefined })]);
    const text = await registry.metrics();
    expect(metricValue(text, 'ipsec_operator_mesh_node_peers{mesh="m1",state="expected"}')).toBe(2);
    expect(metricValue(text, 'ipsec_operator_mesh_node_peers{mesh="m1",state="ready"}')).toBe(1);
    expect(metricValue(text, 'ipsec_operator_mesh_node_sequence_space_used_ratio{mesh="m1"}')).toBe(0.25);
    expect(metricValue(text, 'ipsec_operator_mesh_node_sequence_space_used_ratio{mesh="m2"}')).toBe(0);
    expect(metricValue(text, 'ipsec_operator_mesh_node_key_generation{mesh="m1"}')).toBe(2);
    expect(metricValue(text, 'ipsec_operator_mesh_node_key_generation{mesh="m2"}')).toBe(1);
    expect(metricValue(text, 'ipsec_operator_mesh_node_rotating{mesh="m1"}')).toBe(1);
    expect(metricValue(text, 'ipsec_operator_mesh_node_rotating{mesh="m2"}')).toBe(0);
    expect(metricValue(text, 'ipsec_operator_mesh_node_rotations_total{mesh="m1"}')).toBe(0);
  });

  it('counts a rotation once, when it goes from Rotating to Done, with its duration', async () => {
    const registry = new Registry();
    const metrics = new MeshMetrics(registry);
    metrics.record([report('m1', { generations: [1, 2], rotation: rotating('r1', 2) })]);
    metrics.record([report('m1', { generations: [2], rotation: done('r1', 2, '2026-12-02T10:00:12Z') })]);
    metrics.record([report('m1', { generations: [2], rotation: done('r1', 2, '2026-12-02T10:00:12Z') })]); // the next pass: no second count
    let text = await registry.metrics();
    expect(metricValue(text, 'ipsec_operator_mesh_node_rotations_total{mesh="m1"}')).toBe(1);
    expect(metricValue(text, 'ipsec_operator_mesh_node_rotation_duration_seconds_count{mesh="m1"}')).toBe(1);
    expect(metricValue(text, 'ipsec_operator_mesh_node_rotation_duration_seconds_sum{mesh="m1"}')).toBe(12);
    expect(metricValue(text, 'ipsec_operator_mesh_node_rotation_duration_seconds_bucket{le="10",mesh="m1"}')).toBe(0);
    expect(metricValue(text, 'ipsec_operator_mesh_node_rotation_duration_seconds_bucket{le="20",mesh="m1"}')).toBe(1);
    expect(metricValue(text, 'ipsec_operator_mesh_node_rotating{mesh="m1"}')).toBe(0);
    // The next request, seen Rotating then Done.
    metrics.record([report('m1', { generations: [2, 3], rotation: rotating('r2', 3) })]);
    metrics.record([report('m1', { generations: [3], rotation: done('r2', 3, '2026-12-02T10:00:05Z') })]);
    text = await registry.metrics();
    expect(metricValue(text, 'ipsec_operator_mesh_node_rotations_total{mesh="m1"}')).toBe(2);
    expect(metricValue(text, 'ipsec_operator_mesh_node_rotation_duration_seconds_sum{mesh="m1"}')).toBe(17);
  });

  it('does not count a rotation that was already done when this agent first saw it (done before a restart)', async () => {
    const registry = new Registry();
    const metrics = new MeshMetrics(registry);
    metrics.record([report('m1', { generations: [2], rotation: done('r1', 2, '2026-12-02T10:00:12Z') })]);
    const text = await registry.metrics();
    expect(metricValue(text, 'ipsec_operator_mesh_node_rotations_total{mesh="m1"}')).toBe(0);
    expect(metricValue(text, 'ipsec_operator_mesh_node_rotation_duration_seconds_count{mesh="m1"}')).toBeUndefined();
  });

  it('drops the series of a mesh the node no longer reports (bounded labels)', async () => {
    const registry = new Registry();
    const metrics = new MeshMetrics(registry);
    metrics.record([report('m1', { rotation: rotating('r1', 2), generations: [1, 2] }), report('m2')]);
    metrics.record([report('m1', { rotation: done('r1', 2, '2026-12-02T10:00:03Z'), generations: [2] })]);
    metrics.record([report('m2')]);
    const text = await registry.metrics();
    expect(text).not.toContain('mesh="m1"');
    expect(metricValue(text, 'ipsec_operator_mesh_node_peers{mesh="m2",state="ready"}')).toBe(2);
  });

  it('carries no key byte, SPI or address: only mesh names and fixed words as label values', async () => {
    const registry = new Registry();
    const metrics = new MeshMetrics(registry);
    metrics.record([report('m1', { rotation: rotating('r1', 2), generations: [1, 2] })]);
    metrics.record([report('m1', { rotation: done('r1', 2, '2026-12-02T10:00:03Z'), generations: [2] })]);
    const labelValues = new Set<string>();
    for (const metric of await registry.getMetricsAsJSON()) {
      for (const sample of metric.values) for (const [label, labelValue] of Object.entries(sample.labels)) if (label !== 'le') labelValues.add(String(labelValue));
    }
    expect([...labelValues].sort()).toEqual(['expected', 'm1', 'ready']);
  });
});
