/**
 * The manifests under examples/ are what users copy and what the e2e test and the local demo
 * apply, so they must be valid for the project's own model: every document parses and passes
 * the CRD schema and CEL rules, every resource builds for the nodes it selects (keys found and
 * of the right length), every example gives each node it targets at least one entry, and the
 * planner finds no conflict inside an example (or between examples meant to be applied
 * together). The names, SPIs and reqids of examples/host-to-host are a contract with the e2e
 * test and are pinned here.
 *
 * An example is a directory that directly holds *.yaml files, read the way `kubectl apply -f DIR`
 * and `ipsec-operator apply -f DIR` read it (not recursively).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { formatManifestError, parseManifests, type ManifestSet } from '../../src/model/manifests.js';
import { desiredTables } from '../../src/model/desired.js';
import { MemoryOwnership, observe, presentRecords } from '../support/ownership.js';
import { plan, Stage, type DesiredTables } from '../../src/plan/planner.js';

const ROOT = fileURLToPath(new URL('../../examples/', import.meta.url));
const NODES = {
  a: { 'ipsec.xfrm.io/node': 'a' },
  b: { 'ipsec.xfrm.io/node': 'b' },
} as const;
type NodeName = keyof typeof NODES;

const isManifest = (name: string) => /\.ya?ml$/.test(name);

/** Every directory under examples/ that holds manifests, relative to examples/. */
function findExamples(directory = ROOT): string[] {
  const entries = readdirSync(directory, { withFileTypes: true });
  const here = entries.some((entry) => entry.isFile() && isManifest(entry.name)) ? [relative(ROOT, directory)] : [];
  const below = entries.filter((entry) => entry.isDirectory()).flatMap((entry) => findExamples(join(directory, entry.name)));
  return [...here, ...below].sort();
}

/** The manifest files of examples/PATH: a directory's *.yaml (sorted), or one file. */
function files(path: string): { file: string; text: string }[] {
  const full = join(ROOT, path);
  const names = isManifest(full) ? [full] : readdirSync(full).filter(isManifest).sort().map((name) => join(full, name));
  return names.map((file) => ({ file: relative(ROOT, file), text: readFileSync(file, 'utf8') }));
}

function load(...paths: string[]): ManifestSet {
  return parseManifests(paths.flatMap(files));
}

function tablesFor(set: ManifestSet, node: NodeName): { tables: DesiredTables; errors: string[] } {
  const result = desiredTables(set, { labels: NODES[node], resolveDevice: () => 1 });
  return { tables: result.tables, errors: result.errors.map(formatManifestError) };
}

/** The plan for `node` against an empty kernel and an empty ledger. */
function planOnEmptyNode(set: ManifestSet, node: NodeName) {
  return plan({ desired: tablesFor(set, node).tables, observed: { states: [], policies: [] }, ownership: new MemoryOwnership() });
}

/** The plan for `node` when its kernel already holds (and the ledger owns) what `before` asks for. */
function planAfter(before: ManifestSet, after: ManifestSet, node: NodeName, prune = true) {
  const held = tablesFor(before, node).tables;
  const states = held.states.map(({ resource, entry }) => ({ resource, entry: observe(entry) }));
  const policies = held.policies.map(({ resource, entry }, position) => ({ resource, entry: observe(entry, { index: 8 * (position + 1) + 1 }) }));
  const records = [...states, ...policies].flatMap(({ resource, entry }) => presentRecords([entry], resource));
  const result = plan({
    desired: tablesFor(after, node).tables,
    observed: { states: states.map((desired) => desired.entry), policies: policies.map((desired) => desired.entry) },
    ownership: new MemoryOwnership(records),
  });
  return prune ? result : { ...result, steps: result.steps.filter((step) => step.op !== 'delete') };
}

/**
 * Examples of operator-keyed resources (IpsecMesh) hold no SecurityAssociation or IpsecPolicy:
 * the agents derive the entries. Their schema and CEL rules are checked by the API server itself
 * (test/controlplane/mesh-crd.test.ts); here only what all examples share.
 */
const MESH_EXAMPLES = findExamples().filter((example) => files(example).some(({ text }) => /^kind: IpsecMesh$/m.test(text)));
const EXAMPLES = findExamples().filter((example) => !MESH_EXAMPLES.includes(example));
/** Examples that are steps of a procedure on top of another example, not stand-alone setups. */
const STEPS = EXAMPLES.filter((example) => example.startsWith('rekey/'));

describe('examples', () => {
  it('are found', () => {
    expect(EXAMPLES).toEqual(expect.arrayContaining(['host-to-host', 'site-to-site', 'ipcomp-esp', 'ah', 'nat-t', 'ipv6', 'rekey/1-receivers', 'rekey/2-senders']));
    expect(MESH_EXAMPLES).toEqual(['mesh']);
  });

  describe.each(EXAMPLES)('%s', (example) => {
    const set = load(example);

    it('parses and validates against the CRD schema and CEL rules', () => {
      expect(set.errors.map(formatManifestError)).toEqual([]);
      expect(set.securityAssociations.length + set.policies.length).toBeGreaterThan(0);
    });

    it('starts every file with a comment that explains it', () => {
      for (const { file, text } of files(example)) expect(text.startsWith('# '), file).toBe(true);
    });

    it('keeps keys in Secrets of the operator namespace, marked as example keys', () => {
      for (const { file, text } of files(example)) {
        for (const document of parseAllDocuments(text)) {
          const value = document.toJS() as { kind?: string; metadata?: { namespace?: string } } | null;
          if (value?.kind !== 'Secret') continue;
          expect(value.metadata?.namespace, file).toBe('ipsec-operator');
          expect(text, file).toMatch(/head -c \d+ \/dev\/urandom/);
        }
        for (const line of text.split('\n').filter((candidate) => /^\s+[\w-]+: "[0-9a-f]{16,}"/.test(candidate))) {
          expect(line, file).toMatch(/# example only$/);
        }
      }
    });

    it('gives every resource a nodeSelector that selects node a or b', () => {
      for (const { resource } of [...set.securityAssociations, ...set.policies]) {
        const name = `${resource.kind}/${resource.metadata.name}`;
        expect(resource.spec.nodeSelector, name).toBeDefined();
        const selectedBy = (['a', 'b'] as const).filter((node) =>
          [...tablesFor(set, node).tables.states, ...tablesFor(set, node).tables.policies].some((entry) => entry.resource === name),
        );
        expect(selectedBy, name).not.toEqual([]);
      }
    });

    it.each(['a', 'b'] as const)('builds for node %s without errors, keys included', (node) => {
      const { tables, errors } = tablesFor(set, node);
      expect(errors).toEqual([]);
      expect(tables.states.length + tables.policies.length).toBeGreaterThan(0);
    });

    it.each(['a', 'b'] as const)('plans node %s without conflicts', (node) => {
      const planned = planOnEmptyNode(set, node);
      expect(planned.conflicts).toEqual([]);
      expect(planned.steps.every((step) => step.op === 'create')).toBe(true);
    });
  });

  describe.each(MESH_EXAMPLES)('%s (IpsecMesh)', (example) => {
    it('starts every file with a comment that explains it, and holds no key nor Secret', () => {
      for (const { file, text } of files(example)) {
        expect(text.startsWith('# '), file).toBe(true);
        expect(text, file).not.toMatch(/^kind: Secret$/m);
        expect(text, file).not.toMatch(/[0-9a-f]{32,}/);
      }
    });
  });

  it('can all be applied together (except the rekey steps): no duplicate names, no conflicts', () => {
    const together = load(...EXAMPLES.filter((example) => !STEPS.includes(example)));
    expect(together.errors.map(formatManifestError)).toEqual([]);
    for (const node of ['a', 'b'] as const) {
      expect(tablesFor(together, node).errors).toEqual([]);
      expect(planOnEmptyNode(together, node).conflicts).toEqual([]);
    }
  });

  it('use each key value once (a key shared between SAs repeats AES-GCM nonces)', () => {
    const seen = new Map<string, string>();
    for (const example of EXAMPLES.filter((candidate) => candidate !== 'rekey/2-senders')) {
      for (const [secret, values] of load(example).secrets) {
        for (const [key, value] of values) {
          const where = `${example}: ${secret}/${key}`;
          expect(seen.get(value.toString('hex')), where).toBeUndefined();
          seen.set(value.toString('hex'), where);
        }
      }
    }
  });
});

describe('examples/host-to-host, as the e2e test and the demo rely on it', () => {
  const set = load('host-to-host');
  const sa = (name: string) => set.securityAssociations.find(({ resource }) => resource.metadata.name === name)?.resource.spec;
  const policy = (name: string) => set.policies.find(({ resource }) => resource.metadata.name === name)?.resource.spec;

  it('has the SAs a-to-b (0x1000, reqid 1) and b-to-a (0x1001, reqid 2) on both nodes, keyed from host-to-host-keys', () => {
    expect(set.securityAssociations.map(({ resource }) => resource.metadata.name).sort()).toEqual(['a-to-b', 'b-to-a']);
    expect(sa('a-to-b')).toMatchObject({ source: '198.51.100.1', destination: '198.51.100.2', protocol: 'esp', spi: 0x1000, reqid: 1, mode: 'transport' });
    expect(sa('b-to-a')).toMatchObject({ source: '198.51.100.2', destination: '198.51.100.1', protocol: 'esp', spi: 0x1001, reqid: 2, mode: 'transport' });
    for (const name of ['a-to-b', 'b-to-a']) {
      expect(sa(name)?.aead).toMatchObject({ algorithm: 'rfc4106(gcm(aes))', keyRef: { name: 'host-to-host-keys' } });
    }
    expect([...set.secrets.keys()]).toEqual(['host-to-host-keys']);
    for (const node of ['a', 'b'] as const) {
      expect(tablesFor(set, node).tables.states.map((entry) => entry.resource).sort()).toEqual(['SecurityAssociation/a-to-b', 'SecurityAssociation/b-to-a']);
    }
  });

  it('has out, in and block policies per node, the block ones at priority 1000 behind the allow ones at 100', () => {
    const names = (node: NodeName) => tablesFor(set, node).tables.policies.map((entry) => entry.resource).sort();
    expect(names('a')).toEqual(['IpsecPolicy/a-in', 'IpsecPolicy/a-out', 'IpsecPolicy/a-out-block']);
    expect(names('b')).toEqual(['IpsecPolicy/b-in', 'IpsecPolicy/b-out', 'IpsecPolicy/b-out-block']);
    expect(policy('a-out')).toMatchObject({ direction: 'out', priority: 100, selector: { source: '198.51.100.1/32', destination: '198.51.100.2/32' }, templates: [{ protocol: 'esp', reqid: 1 }] });
    expect(policy('a-in')).toMatchObject({ direction: 'in', priority: 100, selector: { source: '198.51.100.2/32', destination: '198.51.100.1/32' }, templates: [{ protocol: 'esp', reqid: 2 }] });
    expect(policy('b-out')).toMatchObject({ direction: 'out', priority: 100, selector: { source: '198.51.100.2/32', destination: '198.51.100.1/32' }, templates: [{ protocol: 'esp', reqid: 2 }] });
    expect(policy('b-in')).toMatchObject({ direction: 'in', priority: 100, selector: { source: '198.51.100.1/32', destination: '198.51.100.2/32' }, templates: [{ protocol: 'esp', reqid: 1 }] });
    for (const name of ['a-out-block', 'b-out-block']) expect(policy(name)).toMatchObject({ direction: 'out', action: 'block', priority: 1000 });
  });

  it('block guards cover the traffic of the out policy with a different kernel identity', () => {
    // Same direction and selector would be one kernel entry (EEXIST): the guard needs a superset.
    for (const [allow, block] of [['a-out', 'a-out-block'], ['b-out', 'b-out-block']] as const) {
      const allowSelector = policy(allow)!.selector;
      const blockSelector = policy(block)!.selector;
      expect(blockSelector.source).toBe(allowSelector.source);
      expect(blockSelector.destination).not.toBe(allowSelector.destination);
      const [network, length] = blockSelector.destination.split('/') as [string, string];
      const toNumber = (address: string) => address.split('.').reduce((sum, octet) => sum * 256 + Number(octet), 0);
      const peer = toNumber(allowSelector.destination.split('/')[0]!);
      expect(Math.floor(peer / 2 ** (32 - Number(length)))).toBe(Math.floor(toNumber(network) / 2 ** (32 - Number(length))));
    }
  });

  it('plans inbound SAs before outbound ones (make before break)', () => {
    const steps = planOnEmptyNode(set, 'a').steps;
    const stageOf = (resource: string) => steps.find((step) => step.resource === resource)?.stage;
    expect(stageOf('SecurityAssociation/b-to-a')).toBe(Stage.InboundStates);
    expect(stageOf('SecurityAssociation/a-to-b')).toBe(Stage.OutboundStates);
  });
});

describe('examples/rekey on top of examples/host-to-host', () => {
  const base = load('host-to-host');
  const step1 = load('host-to-host', 'rekey/1-receivers');
  const step2 = load('host-to-host', 'rekey/2-senders');
  const step3 = load('host-to-host/policies.yaml', 'rekey/2-senders');

  it('each step set is valid and conflict-free on both nodes', () => {
    for (const set of [step1, step2, step3]) {
      expect(set.errors.map(formatManifestError)).toEqual([]);
      for (const node of ['a', 'b'] as const) {
        expect(tablesFor(set, node).errors).toEqual([]);
        expect(planOnEmptyNode(set, node).conflicts).toEqual([]);
      }
    }
  });

  it('step 1 adds to each node only the new SA it receives with, as an inbound SA', () => {
    for (const [node, resource] of [['a', 'SecurityAssociation/b-to-a-2'], ['b', 'SecurityAssociation/a-to-b-2']] as const) {
      const steps = planAfter(base, step1, node).steps;
      expect(steps.map((step) => [step.op, step.resource, step.stage])).toEqual([['create', resource, Stage.InboundStates]]);
    }
  });

  it('step 2 adds to each node the new SA it sends with, and changes nothing else', () => {
    for (const [node, resource] of [['a', 'SecurityAssociation/a-to-b-2'], ['b', 'SecurityAssociation/b-to-a-2']] as const) {
      const steps = planAfter(step1, step2, node).steps;
      expect(steps.map((step) => [step.op, step.resource, step.stage])).toEqual([['create', resource, Stage.OutboundStates]]);
    }
  });

  it('the new SAs keep the reqids of the SAs they replace, with new SPIs and keys', () => {
    const specs = new Map(step2.securityAssociations.map(({ resource }) => [resource.metadata.name, resource.spec]));
    for (const [old, replacement] of [['a-to-b', 'a-to-b-2'], ['b-to-a', 'b-to-a-2']] as const) {
      expect(specs.get(replacement)?.reqid).toBe(specs.get(old)?.reqid);
      expect(specs.get(replacement)?.spi).not.toBe(specs.get(old)?.spi);
      expect(specs.get(replacement)?.aead?.keyRef.name).toBe('host-to-host-keys-2');
    }
  });

  it('step 3 (prune with the old SAs left out) deletes exactly the old SAs', () => {
    for (const node of ['a', 'b'] as const) {
      const steps = planAfter(step2, step3, node).steps;
      expect(steps.map((step) => [step.op, step.resource]).sort()).toEqual([
        ['delete', 'SecurityAssociation/a-to-b'],
        ['delete', 'SecurityAssociation/b-to-a'],
      ]);
    }
  });
});

describe('examples that exercise YAML pitfalls', () => {
  it('ipv6: the quoted algorithm name with a comma survives the flow mapping', () => {
    const { tables } = tablesFor(load('ipv6'), 'a');
    for (const { entry } of tables.states) {
      expect(entry.algorithms).toMatchObject({ kind: 'aead', aead: { name: 'rfc7539esp(chacha20,poly1305)', icvBits: 128 } });
      expect(entry.id.family).toBe('inet6');
    }
  });

  it('ipcomp-esp: the inbound IPComp template is optional (level use), the outbound one is not', () => {
    const set = load('ipcomp-esp');
    for (const node of ['a', 'b'] as const) {
      for (const { entry } of tablesFor(set, node).tables.policies) {
        expect(entry.templates.map((template) => template.protocol)).toEqual(['ipcomp', 'esp']);
        expect(entry.templates[0]!.level).toBe(entry.id.direction === 'in' ? 'use' : 'required');
      }
    }
  });
});
