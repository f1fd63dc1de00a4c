/**
 * Interface names and indexes of a network namespace, for `selector.device`.
 *
 * Read through iproute2 (`ip -j link show`), which every node image carries anyway: the addon
 * deliberately owns only a NETLINK_XFRM socket, and this lookup happens once per reconcile,
 * not per entry.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface DeviceTable {
  readonly indexByName: ReadonlyMap<string, number>;
  readonly nameByIndex: ReadonlyMap<number, string>;
}

export async function readDevices(netns: string | undefined): Promise<DeviceTable> {
  const args = [...(netns ? ['-n', netns] : []), '-j', 'link', 'show'];
  let stdout: string;
  try {
    ({ stdout } = await run('ip', args, { maxBuffer: 64 * 1024 * 1024 }));
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    throw new Error(`cannot list interfaces${netns ? ` of network namespace ${netns}` : ''} with \`ip ${args.join(' ')}\`: ${detail}`);
  }
  const links = JSON.parse(stdout) as { ifindex: number; ifname: string }[];
  return {
    indexByName: new Map(links.map((link) => [link.ifname, link.ifindex])),
    nameByIndex: new Map(links.map((link) => [link.ifindex, link.ifname])),
  };
}
