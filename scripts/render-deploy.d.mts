// Types of render-deploy.mjs, for the tests that import it.
export declare const REPO_ROOT: string;
export declare const CHART_DIR: string;
export declare const DEPLOY_FILE: string;
export declare const RELEASE: string;
export declare const NAMESPACE: string;
export interface CopyPair {
  /** Source, relative to the repo root. */
  from: string;
  /** The chart's copy, relative to the repo root. */
  to: string;
}
export declare function copyPairs(root?: string): CopyPair[];
export declare function staleCopies(root?: string): string[];
export declare function findHelm(): string;
export declare function renderDeploy(options?: { helm?: string; root?: string }): string;
