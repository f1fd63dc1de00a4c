/**
 * Binds the Informer's ListerWatcher to the API server through client-node: a paged list call
 * supplied by the caller (typed per resource) and client-node's `Watch` on the collection path.
 *
 * What client-node 2.0.1's Watch does, and how it is used here (read in its dist/watch.js):
 *  - it calls `done` exactly once: with null when the stream closes, with an error otherwise
 *    (a non-200 answer has `statusCode`); `done` can run before `watch()` resolves;
 *  - its `requestTimeoutMs` (30 s by default) aborts a connection that received no bytes for
 *    that long. Bookmarks only arrive about once a minute, so it is raised here and the
 *    Informer's watchdog (which counts bookmarks) decides when a stream is dead;
 *  - `timeoutSeconds` asks the server to end the watch cleanly after 5 to 10 minutes (random,
 *    as client-go does), so connections are renewed and spread over time;
 *  - `allowWatchBookmarks` keeps the resourceVersion fresh on quiet resources, so a reconnect
 *    does not hit 410 Gone just because nothing changed for a while.
 */
import { Watch, type KubeConfig } from '@kubernetes/client-node';
import type { ListResult, ListerWatcher, WatchHandle } from './informer.js';

export interface ListPage<T> {
  items: T[];
  metadata?: { resourceVersion?: string; _continue?: string; continue?: string };
}

export interface ListPageRequest {
  labelSelector?: string;
  fieldSelector?: string;
  limit: number;
  continueToken?: string;
}

export interface KubeListerWatcherOptions<T> {
  /** Collection path, e.g. `/apis/ipsec.xfrm.io/v1alpha1/ipsecpolicies` or `/api/v1/namespaces/x/configmaps`. */
  path: string;
  /** One page of the list (a generated client-node list call). */
  listPage(request: ListPageRequest): Promise<ListPage<T>>;
  labelSelector?: string;
  fieldSelector?: string;
  /** Default 500, as client-go's pager. */
  pageSize?: number;
  /** Server-side watch timeout; default a random 300..600 s per watch. */
  watchTimeoutSeconds?: () => number;
  /** client-node's byte-level inactivity timeout; default 10 minutes (the Informer's watchdog is shorter). */
  inactivityTimeoutMs?: number;
}

export function kubeListerWatcher<T>(kubeConfig: KubeConfig, options: KubeListerWatcherOptions<T>): ListerWatcher<T> {
  const watchTimeout = options.watchTimeoutSeconds ?? (() => 300 + Math.floor(Math.random() * 300));
  return {
    list: () => listAllPages(options),
    async watch(resourceVersion, onEvent, onDone): Promise<WatchHandle> {
      const watch = new Watch(kubeConfig);
      setInactivityTimeout(watch, options.inactivityTimeoutMs ?? 10 * 60_000);
      const query: Record<string, string | number | boolean> = {
        allowWatchBookmarks: true,
        resourceVersion,
        timeoutSeconds: watchTimeout(),
      };
      if (options.labelSelector !== undefined) query.labelSelector = options.labelSelector;
      if (options.fieldSelector !== undefined) query.fieldSelector = options.fieldSelector;
      const controller = await watch.watch(
        options.path,
        query,
        (type: string, object: unknown) => onEvent(type, object),
        (error: unknown) => onDone(error ?? undefined),
      );
      return { abort: () => controller.abort() };
    },
  };
}

/** Reads every page of a list; the collection's resourceVersion is the first page's (one snapshot). */
export async function listAllPages<T>(options: Pick<KubeListerWatcherOptions<T>, 'listPage' | 'labelSelector' | 'fieldSelector' | 'pageSize'>): Promise<ListResult<T>> {
  const items: T[] = [];
  let resourceVersion: string | undefined;
  let continueToken: string | undefined;
  do {
    const page = await options.listPage({
      labelSelector: options.labelSelector,
      fieldSelector: options.fieldSelector,
      limit: options.pageSize ?? 500,
      continueToken,
    });
    items.push(...(page.items ?? []));
    resourceVersion ??= page.metadata?.resourceVersion;
    const next = page.metadata?._continue ?? page.metadata?.continue;
    continueToken = next !== undefined && next !== '' ? next : undefined;
  } while (continueToken !== undefined);
  if (resourceVersion === undefined || resourceVersion === '') {
    // Watching from "" would start at "now" and silently miss changes made since the list.
    throw new Error('list response has no metadata.resourceVersion');
  }
  return { items, resourceVersion };
}

/**
 * `requestTimeoutMs` is declared private in client-node 2.0.1's typings but is a plain field of
 * the instance; there is no other way to change it. A unit test checks that the field still
 * exists, so an upgrade that renames it fails loudly instead of reviving 30 s reconnects.
 */
export function setInactivityTimeout(watch: Watch, ms: number): void {
  const target = watch as unknown as { requestTimeoutMs?: unknown };
  if (typeof target.requestTimeoutMs !== 'number') {
    throw new Error('@kubernetes/client-node Watch has no numeric requestTimeoutMs: check list-watch.ts against the installed version');
  }
  target.requestTimeoutMs = ms;
}
