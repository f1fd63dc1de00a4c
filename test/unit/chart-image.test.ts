// The image cannot be built here (no Docker engine), so this checks what the chart runs against
// what the Dockerfile puts in the image and what the CLI accepts: the entrypoint file is copied
// in and its imports exist in the build, the build context is not filtered away by .dockerignore,
// and every subcommand and flag of the chart's containers is in the CLI's usage text.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { CHART, ROOT, only, parseManifests, podTemplate, readRepoFile } from './chart-helpers.js';

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** Dockerfile stages with their instructions (continuation lines joined, comments dropped). */
function parseDockerfile(text: string): Stage[] {
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const stages: Stage[] = [];
  const globalArgs = new Map<string, string>();
  for (const line of lines) {
    const [, op, args] = /^(\w+)\s+(.*)$/.exec(line)!;
    if (op!.toUpperCase() === 'FROM') {
      const [, from, name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args!)!;
      // A FROM may name a global ARG (the base images): its default is what a plain build uses.
      stages.push({ from: from!.replace(/\$\{(\w+)\}/g, (_, arg: string) => globalArgs.get(arg) ?? ''), name, instructions: [] });
    } else if (stages.length === 0) {
      const [, arg, value] = /^ARG\s+(\w+)=(\S+)$/i.exec(line) ?? [];
      if (arg) globalArgs.set(arg, value!);
    } else {
      stages.at(-1)!.instructions.push({ op: op!.toUpperCase(), args: args! });
    }
  }
  return stages;
}

/** [sources, destination, --from stage] of each COPY. */
function copies(stage: Stage): { from?: string; sources: string[]; dest: string }[] {
  return stage.instructions
    .filter((i) => i.op === 'COPY')
    .map((i) => {
      const words = i.args.split(/\s+/);
      const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
      const paths = words.filter((w) => !w.startsWith('--'));
      return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! };
    });
}

const stages = parseDockerfile(readRepoFile('Dockerfile'));
const build = stages[0]!;
const runtime = stages.at(-1)!;
const workdir = (stage: Stage): string => stage.instructions.filter((i) => i.op === 'WORKDIR').at(-1)!.args;
const manifests = parseManifests(readRepoFile('deploy/ipsec-operator.yaml'));

/** Where a runtime path comes from: the build stage's path, or the build context's. */
function origin(path: string): { stage: 'build' | 'context'; path: string } | undefined {
  for (const copy of copies(runtime)) {
    const dest = posix.resolve(workdir(runtime), copy.dest);
    for (const source of copy.sources) {
      const base = source.replace(/\/$/, '');
      const target = copy.dest.endsWith('/') && !source.endsWith('/') ? posix.join(dest, posix.basename(base)) : dest;
      if (path === target || path.startsWith(`${target}/`)) {
        const rest = path.slice(target.length);
        return copy.from ? { stage: 'build', path: posix.join(posix.resolve(workdir(build), base), rest) } : { stage: 'context', path: base + rest };
      }
    }
  }
  return undefined;
}

describe('Dockerfile', () => {
  it('builds on node:20-bookworm and runs on node:20-bookworm-slim with iproute2', () => {
    expect(stages.length).toBe(2);
    expect(build.from).toBe('node:20-bookworm');
    expect(runtime.from).toBe('node:20-bookworm-slim');
    const buildRuns = build.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
    for (const step of ['python3', 'make', 'g++', 'npm ci', 'npm run build', 'npm prune --omit=dev']) expect(buildRuns).toContain(step);
    expect(runtime.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n')).toMatch(/apt-get install [^\n]*\biproute2\b/);
  });

  it('runs as 65532 by default with the CLI as entrypoint', () => {
    expect(runtime.instructions.filter((i) => i.op === 'USER').at(-1)?.args).toBe('65532:65532');
    const entrypoint = JSON.parse(runtime.instructions.find((i) => i.op === 'ENTRYPOINT')!.args) as string[];
    expect(entrypoint).toEqual(['node', '/app/dist/bundle/ipsec-operator.mjs']);
  });

  it('runs the bundle that npm run build makes from the CLI entry point', () => {
    // One file to load, not the thousands bin/ imports: see the Dockerfile's ENTRYPOINT comment.
    expect(origin('/app/dist/bundle/ipsec-operator.mjs')).toEqual({ stage: 'build', path: '/src/dist/bundle/ipsec-operator.mjs' });
    const buildRuns = build.instructions.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
    expect(buildRuns).toContain('npm run build');
    expect(JSON.parse(readRepoFile('package.json')).scripts.build).toContain('node scripts/bundle.mjs');
    const bundler = readRepoFile('scripts/bundle.mjs');
    expect(bundler).toContain("'../src/cli/entry.ts'");
    // The entry dist/bundle/ipsec-operator.mjs, its chunks beside it in dist/bundle/chunks/:
    // the image copies dist/ whole (test/unit/bundle.test.ts runs every command from a build).
    expect(bundler).toContain("'../dist/bundle'");
    expect(bundler).toContain("'ipsec-operator': new URL('../src/cli/entry.ts'");
    expect(bundler).toContain("outExtension: { '.js': '.mjs' }");
    expect(bundler).toMatch(/bundle: true/);
    expect(origin('/app/dist/bundle/chunks/x.mjs')).toEqual({ stage: 'build', path: '/src/dist/bundle/chunks/x.mjs' });
    // agent, controller and mesh run from server.cjs with its code cache, both made by npm run build.
    expect(bundler).toContain("outfile: join(outdir, 'server.cjs')");
    expect(origin('/app/dist/bundle/server.cjs.cache')).toEqual({ stage: 'build', path: '/src/dist/bundle/server.cjs.cache' });
    // The bundle finds the addon under the package root (/app), as dist/ does.
    expect(origin('/app/package.json')).toEqual({ stage: 'build', path: '/src/package.json' });
  });

  it('copies the entrypoint, the compiled CLI it imports, the addon, node_modules, package.json and the CRDs', () => {
    const entry = origin('/app/bin/ipsec-operator.js');
    expect(entry).toEqual({ stage: 'build', path: '/src/bin/ipsec-operator.js' });
    // bin/ipsec-operator.js imports ../dist/cli/main.js: dist/ is tsc's output of src/ (rootDir src).
    const bin = readRepoFile('bin/ipsec-operator.js');
    const imported = /from '\.\.\/(dist\/[^']+)'/.exec(bin)![1]!;
    expect(origin(`/app/${imported}`)).toEqual({ stage: 'build', path: `/src/${imported}` });
    expect(existsSync(join(ROOT, imported.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts')))).toBe(true);
    expect(readRepoFile('tsconfig.build.json')).toMatch(/"rootDir": "src", "outDir": "dist"/);
    // The addon: binding.gyp's target, where src/netlink/socket.ts looks for it (under the package root).
    const target = /"target_name": "(\w+)"/.exec(readRepoFile('native/binding.gyp'))![1]!;
    expect(readRepoFile('src/netlink/socket.ts')).toContain(`join('native', 'build', 'Release', '${target}.node')`);
    expect(origin(`/app/native/build/Release/${target}.node`)).toEqual({ stage: 'build', path: `/src/native/build/Release/${target}.node` });
    expect(origin('/app/package.json')).toEqual({ stage: 'build', path: '/src/package.json' });
    expect(origin('/app/node_modules/yaml/package.json')?.stage).toBe('build');
    expect(origin('/app/deploy/crds/ipsecpolicies.ipsec.xfrm.io.yaml')).toEqual({ stage: 'context', path: 'deploy/crds/ipsecpolicies.ipsec.xfrm.io.yaml' });
  });

  it('copies into the build stage only what exists and what .dockerignore lets through', () => {
    const ignore = readRepoFile('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    expect(ignore[0]).toBe('*'); // an allowlist: every other line re-includes a path
    const allowed = ignore.slice(1).map((line) => line.replace(/^!/, '').replace(/\/$/, ''));
    const context = stages.flatMap((stage) => copies(stage).filter((copy) => !copy.from).flatMap((copy) => copy.sources));
    expect(context.length).toBeGreaterThan(5);
    for (const source of context) {
      const path = source.replace(/\/$/, '');
      expect(existsSync(join(ROOT, path)), source).toBe(true);
      expect(allowed.some((allow) => path === allow || path.startsWith(`${allow}/`)), `${source} is excluded by .dockerignore`).toBe(true);
    }
  });
});

describe('the commands the chart runs exist in the CLI', () => {
  let written = '';
  afterEach(() => {
    vi.restoreAllMocks();
  });
  async function usage(argv: string[]): Promise<string> {
    written = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written += String(chunk);
      return true;
    });
    await main(argv);
    vi.restoreAllMocks();
    return written;
  }

  /** Subcommand and flags of every container of the chart's templates, all branches included. */
  function templateCommands(): { file: string; command: string; flags: string[] }[] {
    const out: { file: string; command: string; flags: string[] }[] = [];
    for (const file of readdirSync(join(CHART, 'templates')).filter((f) => f.endsWith('.yaml'))) {
      const text = readFileSync(join(CHART, 'templates', file), 'utf8');
      const argsBlock = /^(\s+)args:\n((?:\1(?: {2}|- |\s*\{\{|\s*#).*\n)+)/m.exec(text);
      if (!argsBlock) continue;
      const items = [...argsBlock[2]!.matchAll(/^\s+- (\S+)/gm)].map((m) => m[1]!);
      out.push({ file, command: items[0]!, flags: items.slice(1).map((item) => item.replace(/=.*$/, '')) });
    }
    return out;
  }

  it('the templates run `controller` and `agent` with the flags of docs/operations.md', () => {
    const commands = templateCommands();
    expect(commands).toEqual([
      { file: 'agent-daemonset.yaml', command: 'agent', flags: ['--metrics-address', '--state-dir', '--resync-seconds', '--per-sa-metrics'] },
      { file: 'controller-deployment.yaml', command: 'controller', flags: ['--metrics-address', '--leader-elect', '--lease-duration-seconds', '--renew-deadline-seconds', '--retry-period-seconds'] },
    ]);
    const docs = readRepoFile('docs/operations.md');
    for (const { command, flags } of commands) {
      const line = docs.split('\n').find((l) => l.startsWith(`${command[0]!.toUpperCase()}${command.slice(1)} flags:`))!;
      for (const flag of flags) expect(line, `${command} ${flag}`).toContain(`\`${flag}`);
    }
  });

  it('deploy/ipsec-operator.yaml runs the same commands', () => {
    const args = (kind: string, name: string): string[] => podTemplate(only(manifests, kind, name)).spec.containers[0]!.args!;
    expect(args('Deployment', 'ipsec-operator-controller')).toEqual([
      'controller',
      '--metrics-address=:8080',
      '--leader-elect',
      '--lease-duration-seconds=15',
      '--renew-deadline-seconds=10',
      '--retry-period-seconds=2',
    ]);
    expect(args('DaemonSet', 'ipsec-operator-agent')).toEqual(['agent', '--metrics-address=:9090', '--state-dir=/var/lib/ipsec-operator', '--resync-seconds=30']);
  });

  it.each(templateCommands().map(({ command, flags }) => [command, flags] as const))(
    '`ipsec-operator --help` and `ipsec-operator %s --help` list the command and its flags %j',
    async (command, flags) => {
      const global = await usage(['--help']);
      expect(global, 'the usage text lists the command').toMatch(new RegExp(`^\\s+${command}\\b`, 'm'));
      const text = global + (await usage([command, '--help']));
      for (const flag of flags) expect(text, `${command} ${flag}`).toMatch(new RegExp(`${flag}(?![\\w-])`));
    },
  );
});
