/**
 * The contract between the node-side tracer (src/trace/node.ts) and each proxy mode's
 * interpreter (nftables.ts, iptables.ts, ipvs.ts). An interpreter reads the node's rules
 * through a view (a kernel view on a node, a view over the planner's output in the table
 * tests) and evaluates exactly the rule shapes podnet's planner for that mode generates;
 * a rule it does not recognise on the packet's path is reported as a foreign observation
 * (`foreign: true`) and makes the outcome Unknown instead of being guessed at.
 */
import type { Observation, Origin, Packet, Verdict } from './types.js';

export interface LbContext {
  /** The node whose rules these are. */
  node: string;
  /**
   * Where the packet meets netfilter: `prerouting` for packets from pods, other nodes or
   * outside; `output` for packets a host process on the node sends.
   */
  hook: 'prerouting' | 'output';
  /** `fib daddr type local`: whether the address is one of this node's own. */
  isLocal(ip: string): boolean;
}

export interface LbOutcome {
  /** Chance of this outcome, 0..1; the outcomes of one call sum to 1. */
  probability: number;
  /** Component 'Netfilter/LB' (or 'IPVS'), node = ctx.node, packet = the packet after the step. */
  observations: Observation[];
  /** The packet after DNAT (unchanged when no Service matched). */
  packet: Packet;
  /** The masquerade mark (0x4000) was set: postrouting will masquerade the packet. */
  masqueradeMark: boolean;
  /** Present when the packet ends here: Dropped / Rejected by a rule, or Unknown (foreign rule). */
  verdict?: Verdict;
  /** The Service (and EndpointSlice) that matched, when one did. */
  service?: Origin[];
  /** The endpoint chosen in this outcome, when a Service matched. */
  endpoint?: { ip: string; port: number };
}

export interface SnatContext {
  node: string;
  /** The address masquerade would use: the primary address of the outgoing device. */
  outAddress: string;
  /** The packet's original destination before DNAT (hairpin and conntrack-based rules need it). */
  original: Packet;
}

export interface SnatOutcome {
  observations: Observation[];
  packet: Packet;
  masqueraded: boolean;
}

/** One proxy mode's interpreter on one node. */
export interface LbInterpreter {
  readonly mode: 'nftables' | 'iptables' | 'ipvs';
  /** The filter and nat rules the packet meets before routing (prerouting or output). */
  dnat(pkt: Packet, ctx: LbContext): Promise<LbOutcome[]>;
  /** Postrouting: masquerade when the mark is set (or the hairpin rule sets it). */
  snat(pkt: Packet, masqueradeMark: boolean, ctx: SnatContext): Promise<SnatOutcome>;
}
