/**
 * `apply` and `diff`: manifests → validated desired tables → plan → (apply → verify).
 * Everything is validated before the kernel is touched; any invalid document means nothing is
 * applied.
 */
import { loadManifests, formatManifestError } from '../model/manifests.js';
import { desiredTables, type DesiredResult } from '../model/desired.js';
import { describePlan, describeStep } from '../plan/describe.js';
import { converge, kernelUnsupported, planFor } from '../engine/converge.js';
import { openKernelTables } from '../engine/kernel.js';
import { readDevices } from '../engine/devices.js';
import { Ledger, ledgerPath } from '../ownership/ledger.js';
import { InputError } from './errors.js';
import { encapSocketWarnings, withCliEncapExemptions } from './encap-check.js';
import { identityCollisions } from '../model/collisions.js';

export interface ApplyOptions {
  readonly mode: 'apply' | 'dry-run' | 'diff';
  readonly files: readonly string[];
  readonly netns: string | undefined;
  readonly prune: boolean;
  /** `--prune-all`: prune even when the input holds no resource (deletes every owned entry). */
  readonly pruneAll?: boolean;
  readonly nodeLabels: Record<string, string> | undefined;
  readonly stateDirectory: string;
}

/** The edges runApply touches, replaceable so that tests can watch that nothing was opened. */
export interface ApplyIo {
  readonly openKernel: typeof openKernelTables;
  readonly readDevices: typeof readDevices;
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

const processIo: ApplyIo = {
  openKernel: openKernelTables,
  readDevices,
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

export async function runApply(options: ApplyOptions, io: ApplyIo = processIo): Promise<number> {
  const { out, err } = io;
  const desired = await readDesired(options, io);
  const prune = options.prune || options.pruneAll === true;
  const kernel = await io.openKernel(options.netns);
  try {
    // A field this kernel would drop is bad input here, like a wrong key: nothing is planned.
    const unsupported = kernelUnsupported(desired.tables, kernel.features);
    if (unsupported.length > 0) {
      for (const entry of unsupported) err(`${entry.resource}: ${entry.path}: ${entry.message} (KernelUnsupported)`);
      throw new InputError(`${unsupported.length} field${unsupported.length === 1 ? '' : 's'} this kernel cannot keep; nothing was applied`);
    }
    const path = ledgerPath(options.stateDirectory, options.netns);
    if (options.mode !== 'apply') {
      const ledger = await Ledger.peek(path, kernel.scope);
      const planned = await planFor(kernel, ledger, { desired: desired.tables, prune });
      for (const line of describePlan(planned)) out(line);
      for (const refusal of planned.sequenceRefused) out(`refuse ${refusal.message} (${refusal.reason})`);
      const changes = planned.steps.length + planned.conflicts.length + planned.sequenceRefused.length;
      if (options.mode === 'diff') return changes === 0 ? 0 : 1;
      out(changes === 0 ? 'no changes' : `dry run: ${planned.steps.length} change(s) not applied`);
      return planned.conflicts.length === 0 && planned.sequenceRefused.length === 0 ? 0 : 1;
    }

    const ledger = await Ledger.open(path, { scope: kernel.scope });
    if (ledger.setAside > 0) {
      err(`note: ${path} described another boot or network namespace; its ${ledger.setAside} record(s) prove nothing here and were set aside (entries they named are treated as foreign)`);
    }
    try {
      const result = await converge(kernel, ledger, { desired: desired.tables, prune, dryRun: false });
      for (const line of describePlan(result.plan)) out(line);
      switch (result.outcome) {
        case 'planned':
          return 0;
        case 'unsupported': // checked above; kept for the case the two checks ever differ
          for (const entry of result.unsupported) err(`${entry.resource}: ${entry.path}: ${entry.message} (KernelUnsupported)`);
          throw new InputError('fields this kernel cannot keep; nothing was applied');
        case 'needs-rekey':
          // Installing these keys again could repeat nonces: the whole apply is refused.
          for (const refusal of result.sequence) err(`${refusal.message} (${refusal.reason})`);
          err(`${result.sequence.length} SA(s) cannot be installed again with the same key; nothing was applied`);
          return 1;
        case 'conflict':
          err(`${result.plan.conflicts.length} conflict(s) with entries ipsec-operator did not create; nothing was applied`);
          return 1;
        case 'failed': {
          for (const refusal of result.sequence) err(`${refusal.message} (${refusal.reason})`);
          for (const failure of result.report.failures) {
            err(`kernel refused: ${describeStep(failure.step)}: ${failure.message} (${failure.code})`);
          }
          if (result.report.stopped !== undefined) err(`stopped: ${result.report.stopped}`);
          for (const failure of result.report.rollbackFailures) {
            err(`ROLLBACK FAILED, the kernel holds part of the plan: ${describeStep(failure.step)}: ${failure.message} (${failure.code})`);
          }
          err(
            result.report.rollbackFailures.length === 0
              ? `nothing was applied (${result.report.rolledBack.length} change(s) rolled back)`
              : 'the kernel may hold a partial plan; run apply again once the cause is fixed',
          );
          return 1;
        }
        case 'not-kept':
          for (const refusal of result.sequence) err(`${refusal.message} (${refusal.reason})`);
          // Applying again would change nothing (or replace the SA again): stop and say so.
          for (const entry of result.notKept) err(`${entry.message} (KernelDidNotKeep)`);
          err(`the kernel acknowledged ${result.notKept.length} change(s) and did not keep them; the rest of the plan was applied`);
          return 1;
        case 'applied':
          if (result.sequence.length > 0) {
            // The kernel did not take a resume value: those SAs were deleted again.
            for (const refusal of result.sequence) err(`${refusal.message} (${refusal.reason})`);
            return 1;
          }
          if (result.remaining.steps.length > 0 || result.remaining.conflicts.length > 0) {
            err('the kernel does not match the manifests after apply:');
            for (const line of describePlan(result.remaining)) err(`  ${line}`);
            return 1;
          }
          out(result.plan.steps.length === 0 ? 'no changes' : `applied ${result.plan.steps.length} change(s); the kernel matches`);
          for (const line of encapSocketWarnings(desired.tables, options.netns)) err(line);
          return 0;
      }
    } finally {
      await ledger.close();
    }
  } finally {
    kernel.close();
  }
}

/**
 * Manifests → validated desired tables, or an InputError with every problem printed. Its own
 * function so that the parsed documents (about 11 MB at 10,000 policies) are garbage once it
 * returns: the rest of the run holds only the tables, and a dump, a plan and the ledger's
 * records come on top of them (issue 10's CLI peak RSS).
 */
async function readDesired(options: ApplyOptions, io: ApplyIo): Promise<DesiredResult> {
  const manifests = await loadManifests(options.files).catch((error: Error) => {
    throw new InputError(error.message);
  });
  const devices = await io.readDevices(options.netns);
  const desired = withCliEncapExemptions(desiredTables(manifests, { labels: options.nodeLabels, resolveDevice: (name) => devices.indexByName.get(name) }), manifests);
  const sources = new Map([...manifests.securityAssociations, ...manifests.policies].map(({ resource, source }) => [`${resource.kind}/${resource.metadata.name}`, source]));
  const errors = [...manifests.errors, ...desired.errors, ...identityCollisions(desired.tables, (resource) => sources.get(resource))];
  if (errors.length > 0) {
    for (const error of errors) io.err(formatManifestError(error));
    throw new InputError(`${errors.length} problem${errors.length === 1 ? '' : 's'} in the input; nothing was applied`);
  }
  // kubectl refuses "no objects passed to apply"; here an empty input with --prune would
  // delete every entry ipsec-operator created (an empty directory, a mistyped extension).
  if (options.prune && options.pruneAll !== true && desired.tables.states.length + desired.tables.policies.length === 0) {
    const resources = manifests.securityAssociations.length + manifests.policies.length;
    throw new InputError(
      resources === 0
        ? 'the input holds no SecurityAssociation or IpsecPolicy: --prune would delete every entry ipsec-operator created; pass --prune-all to do that'
        : `--node-labels selects none of the ${resources} resource(s): --prune would delete every entry ipsec-operator created; pass --prune-all to do that`,
    );
  }
  return desired;
}
