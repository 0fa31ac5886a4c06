/**
 * The node's pod subnets, flannel-style: choose a free subnet of the cluster CIDR and
 * claim it through the API. The claim is a compare-and-swap in two senses: the update
 * of the Node carries its resourceVersion, and the API writes the subnet's allocation
 * record in the same transaction, so of two agents that chose the same subnet exactly
 * one gets it — the other is refused (422) and chooses again. Against a kube-apiserver
 * whose controller-manager assigns podCIDRs, the agent adopts the assigned ones.
 *
 * The subnet is kept in the state dir too, so a restarted agent asks for the same one
 * (its pods keep their addresses) and notices a configuration that changed under it.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeClient } from '../client/index.js';
import { RESOURCES, isConflict, isInvalid } from '../client/index.js';
import type { Node } from '../client/types.js';
import { chooseFree, contains } from '../ipam/subnets.js';
import { ErrorCodes, PodnetError, errnoOf } from '../util/errors.js';
import { Cidr } from '../util/ipnet.js';
import type { Logger } from '../util/log.js';
import type { ClusterNetwork } from './config.js';

export interface SubnetState {
  node: string;
  /** Cluster CIDRs the subnets were claimed from (a different configuration is refused). */
  clusterCIDRs: string[];
  /** One per family, in the order of the cluster networks. */
  subnets: string[];
}

const FILE = 'subnet.json';
const MAX_ATTEMPTS = 20;

export function readSubnetState(stateDir: string): SubnetState | undefined {
  try {
    return JSON.parse(readFileSync(join(stateDir, FILE), 'utf8')) as SubnetState;
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return undefined;
    throw new PodnetError(ErrorCodes.INVALID_ARGUMENT, `the subnet claim in ${join(stateDir, FILE)} is unreadable: ${(e as Error).message}`, { field: 'state-dir' });
  }
}

export function writeSubnetState(stateDir: string, s: SubnetState): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, FILE);
  const fd = openSync(`${file}.tmp`, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify(s));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(`${file}.tmp`, file);
  const dfd = openSync(stateDir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

function podCIDRsOf(n: Node | undefined): string[] {
  const s = n?.spec;
  return s?.podCIDRs?.length ? s.podCIDRs : s?.podCIDR ? [s.podCIDR] : [];
}

/**
 * Returns the node's subnets (one per cluster network), claiming them when the Node has
 * none. Refuses clearly (PODNET_IPAM_EXHAUSTED, PODNET_IPAM_SUBNET_MISMATCH) when the cluster CIDR is exhausted, or when
 * what the Node or the state dir holds disagrees with the configuration.
 */
export async function claimSubnets(opts: { client: KubeClient; nodeName: string; networks: ClusterNetwork[]; stateDir: string; log: Logger; random?: () => number }): Promise<Cidr[]> {
  const { client, nodeName, networks, stateDir, log } = opts;
  const nodes = client.resource(RESOURCES.nodes);
  const wanted = networks.map((n) => n.cidr.toString());
  const saved = readSubnetState(stateDir);
  if (saved && (saved.node !== nodeName || saved.clusterCIDRs.join(',') !== wanted.join(','))) {
    throw new PodnetError(
      ErrorCodes.IPAM_SUBNET_MISMATCH,
      `the state dir holds subnets ${saved.subnets.join(', ')} of node ${saved.node} from cluster CIDR ${saved.clusterCIDRs.join(', ')}, but this agent is node ${nodeName} with cluster CIDR ${wanted.join(', ')}: run podnet cleanup for the old configuration first`,
      { field: 'cluster-cidr', node: nodeName, stateDir },
    );
  }
  for (let attempt = 1; ; attempt++) {
    const me = await nodes.get(undefined, nodeName);
    const held = podCIDRsOf(me);
    if (held.length) {
      const subnets = matchHeld(held, networks, nodeName);
      if (saved && saved.subnets.join(',') !== subnets.map(String).join(',')) {
        throw new PodnetError(ErrorCodes.IPAM_SUBNET_MISMATCH, `node ${nodeName} holds pod subnets ${subnets.join(', ')} in the API, but the state dir says ${saved.subnets.join(', ')}: its pods would change address; run podnet cleanup first`, { field: 'state-dir', node: nodeName });
      }
      writeSubnetState(stateDir, { node: nodeName, clusterCIDRs: wanted, subnets: subnets.map(String) });
      return subnets;
    }
    const all = (await nodes.list({ all: true })).items;
    const taken = all.flatMap((n) => podCIDRsOf(n));
    const chosen: Cidr[] = [];
    for (const [i, net] of networks.entries()) {
      const c = chooseFree(net.cidr, net.subnetSize, taken, { ...(saved?.subnets[i] ? { prefer: saved.subnets[i] } : {}), ...(opts.random ? { random: opts.random } : {}) });
      if (!c) {
        throw new PodnetError(ErrorCodes.IPAM_EXHAUSTED, `cluster CIDR ${net.cidr} has no free /${net.subnetSize} subnet left for node ${nodeName} (${all.length} nodes hold subnets)`, { field: 'cluster-cidr', cidr: String(net.cidr), node: nodeName });
      }
      chosen.push(c);
    }
    const text = chosen.map(String);
    try {
      await nodes.patch(undefined, nodeName, { metadata: { resourceVersion: me.metadata.resourceVersion }, spec: { podCIDR: text[0], podCIDRs: text } }, 'merge');
      log.info({ node: nodeName, subnets: text, attempt }, 'claimed pod subnets');
      writeSubnetState(stateDir, { node: nodeName, clusterCIDRs: wanted, subnets: text });
      return chosen;
    } catch (e) {
      // Another agent took the subnet (422) or our Node changed (409): look again.
      if (!(isInvalid(e) || isConflict(e)) || attempt >= MAX_ATTEMPTS) throw e;
      log.info({ node: nodeName, subnets: text, attempt, err: (e as Error).message }, 'subnet claim lost a race; choosing again');
    }
  }
}

/** The Node's podCIDRs, matched to the configured networks (one per family, inside it). */
function matchHeld(held: string[], networks: ClusterNetwork[], nodeName: string): Cidr[] {
  const out: Cidr[] = [];
  for (const net of networks) {
    const c = held.map((h) => Cidr.parse(h, 'spec.podCIDRs')).find((x) => x.family === net.cidr.family);
    if (!c || !contains(net.cidr, c) || c.prefix !== net.subnetSize) {
      throw new PodnetError(
        ErrorCodes.IPAM_SUBNET_MISMATCH,
        `node ${nodeName} holds pod subnets ${held.join(', ')}, which do not match the configured cluster CIDR ${net.cidr} with /${net.subnetSize} node subnets`,
        { field: 'cluster-cidr', node: nodeName },
      );
    }
    out.push(c);
  }
  return out;
}
