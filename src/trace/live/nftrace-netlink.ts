/**
 * nftrace events read straight from the kernel: a NETLINK_NETFILTER socket subscribed to
 * NFNLGRP_NFTRACE, each NFT_MSG_TRACE message decoded into the same TraceEvent shape the
 * `nft monitor trace` parser gives (nftrace.ts). `nft monitor trace` loads the whole ruleset
 * before it prints anything (5-6 s with 10,000 Services here); this socket is subscribed in
 * microseconds, and the rules an event names are looked up afterwards by handle, one chain
 * at a time (`describe`).
 *
 * Kernel side (net/netfilter/nf_tables_trace.c): one message per rule match / chain return /
 * base-chain policy, with NFTA_TRACE_ID per packet and hook traversal, the table, chain,
 * rule handle, verdict, and on the first message of a traversal the network and transport
 * headers, iif / oif and the mark.
 */
import { RawNetlinkSocket } from 'netlink';
import { NETLINK_NETFILTER, NFTA_VERDICT, NFNL_SUBSYS_NFTABLES, attrI32, attrStr, attrU32, attrU64, parseAttrs, parseMessages } from '../../kernel/nftables/nfnl.js';
import type { TraceEvent } from './nftrace.js';
import { ipFromBytes } from '../../util/ipnet.js';

/** NFNLGRP_NFTRACE. */
export const NFNLGRP_NFTRACE = 9;
/** NFT_MSG_TRACE. */
export const NFT_MSG_TRACE = 17;
const NFGENMSG_LEN = 4;

/** enum nft_trace_attributes. */
export const NFTA_TRACE = { TABLE: 1, CHAIN: 2, RULE_HANDLE: 3, TYPE: 4, VERDICT: 5, ID: 6, LL_HEADER: 7, NETWORK_HEADER: 8, TRANSPORT_HEADER: 9, IIF: 10, IIFTYPE: 11, OIF: 12, OIFTYPE: 13, MARK: 14, NFPROTO: 15, POLICY: 16 } as const;
/** enum nft_trace_types. */
const TRACE_TYPE = { 1: 'policy', 2: 'verdict', 3: 'rule' } as const;
const FAMILIES: Record<number, string> = { 1: 'inet', 2: 'ip', 3: 'arp', 5: 'netdev', 7: 'bridge', 10: 'ip6' };


function verdictText(nest: Buffer | undefined): string | undefined {
  if (!nest) return undefined;
  const v = parseAttrs(nest);
  const code = attrI32(v.get(NFTA_VERDICT.CODE));
  const chain = attrStr(v.get(NFTA_VERDICT.CHAIN));
  switch (code) {
    case 0:
      return 'drop';
    case 1:
      return 'accept';
    case 3:
      return 'queue';
    case -1:
      return 'continue';
    case -2:
      return 'break';
    case -3:
      return `jump ${chain}`;
    case -4:
      return `goto ${chain}`;
    case -5:
      return 'return';
    default:
      return code === undefined ? undefined : `verdict ${code}`;
  }
}

/** Header fields in nft's names ("ip saddr", "tcp dport", "ip dscp" as 0xNN). */
export function headerFields(net: Buffer | undefined, th: Buffer | undefined): Record<string, string> {
  const f: Record<string, string> = {};
  let proto: number | undefined;
  if (net && net.length >= 20 && net[0]! >> 4 === 4) {
    f['ip dscp'] = `0x${(net[1]! >> 2).toString(16).padStart(2, '0')}`;
    f['ip length'] = String(net.readUInt16BE(2));
    f['ip ttl'] = String(net[8]);
    proto = net[9];
    f['ip saddr'] = ipFromBytes(net.subarray(12, 16));
    f['ip daddr'] = ipFromBytes(net.subarray(16, 20));
  } else if (net && net.length >= 40 && net[0]! >> 4 === 6) {
    f['ip6 dscp'] = `0x${((((net[0]! & 0x0f) << 4) | (net[1]! >> 4)) >> 2).toString(16).padStart(2, '0')}`;
    f['ip6 length'] = String(net.readUInt16BE(4));
    proto = net[6];
    f['ip6 saddr'] = ipFromBytes(net.subarray(8, 24));
    f['ip6 daddr'] = ipFromBytes(net.subarray(24, 40));
  }
  if (th && th.length >= 4 && (proto === 6 || proto === 17 || proto === 132)) {
    const p = proto === 6 ? 'tcp' : proto === 17 ? 'udp' : 'sctp';
    f[`${p} sport`] = String(th.readUInt16BE(0));
    f[`${p} dport`] = String(th.readUInt16BE(2));
    if (proto === 6 && th.length >= 14) {
      const flags = th[13]!;
      f['tcp flags'] = ['fin', 'syn', 'rst', 'psh', 'ack', 'urg', 'ecn', 'cwr'].filter((_, i) => flags & (1 << i)).join('|') || '0x0';
    }
  } else if (th && th.length >= 2 && (proto === 1 || proto === 58)) {
    const p = proto === 1 ? 'icmp' : 'icmpv6';
    f[`${p} type`] = String(th[0]);
    f[`${p} code`] = String(th[1]);
    if (th.length >= 6) f[`${p} id`] = String(th.readUInt16BE(4));
  }
  return f;
}

/**
 * One NFT_MSG_TRACE payload → its events: a `packet` event first when the message carries
 * the headers (the first of a traversal, as nft prints "packet:"), then the rule / verdict /
 * policy event. `ifname` names interface indexes.
 */
export function decodeTrace(data: Buffer, ifname: (index: number) => string | undefined = () => undefined): TraceEvent[] {
  const family = FAMILIES[data[0] ?? 0] ?? String(data[0]);
  const a = parseAttrs(data, NFGENMSG_LEN);
  const id = (attrU32(a.get(NFTA_TRACE.ID)) ?? 0).toString(16).padStart(8, '0');
  const table = attrStr(a.get(NFTA_TRACE.TABLE)) ?? '';
  const chain = attrStr(a.get(NFTA_TRACE.CHAIN)) ?? '';
  const type = TRACE_TYPE[(attrU32(a.get(NFTA_TRACE.TYPE)) ?? 0) as 1 | 2 | 3] ?? 'rule';
  const out: TraceEvent[] = [];
  const net = a.get(NFTA_TRACE.NETWORK_HEADER);
  const th = a.get(NFTA_TRACE.TRANSPORT_HEADER);
  const iif = attrU32(a.get(NFTA_TRACE.IIF));
  const oif = attrU32(a.get(NFTA_TRACE.OIF));
  const mark = attrU32(a.get(NFTA_TRACE.MARK));
  if (net || th) {
    const fields: Record<string, string> = {};
    if (iif !== undefined) fields['iif'] = `"${ifname(iif) ?? iif}"`;
    if (oif !== undefined) fields['oif'] = `"${ifname(oif) ?? oif}"`;
    Object.assign(fields, headerFields(net, th));
    if (mark) fields['meta mark'] = `0x${mark.toString(16).padStart(8, '0')}`;
    out.push({ id, family, table, chain, kind: 'packet', fields, raw: `trace id ${id} ${family} ${table} ${chain} packet: ${Object.entries(fields).map(([k, v]) => `${k} ${v}`).join(' ')}` });
  }
  const handle = attrU64(a.get(NFTA_TRACE.RULE_HANDLE));
  const verdict = type === 'policy' ? (attrU32(a.get(NFTA_TRACE.POLICY)) === 0 ? 'drop' : 'accept') : verdictText(a.get(NFTA_TRACE.VERDICT));
  out.push({
    id,
    family,
    table,
    chain,
    kind: type,
    ...(verdict ? { verdict } : {}),
    ...(handle !== undefined && type === 'rule' ? { handle } : {}),
    ...(mark && type !== 'rule' ? { fields: { 'meta mark': `0x${mark.toString(16).padStart(8, '0')}` } } : {}),
    raw: `trace id ${id} ${family} ${table} ${chain} ${type === 'rule' ? `rule handle ${handle ?? '?'}` : type}${verdict ? ` (verdict ${verdict})` : ''}`,
  });
  return out;
}

/** Subscribes to the nftrace group of the current network namespace and collects events. */
export class TraceListener {
  private readonly sock: RawNetlinkSocket;
  private readonly list: TraceEvent[] = [];
  private closed = false;

  private constructor(private readonly ifname: (index: number) => string | undefined) {
    this.sock = new RawNetlinkSocket(NETLINK_NETFILTER);
    this.sock.setRecvBufferSize(8 << 20);
    this.sock.on('message', (buf: Buffer) => {
      for (const m of parseMessages(buf)) if (m.type === ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_TRACE)) this.list.push(...decodeTrace(m.data, this.ifname));
    });
    this.sock.on('error', () => undefined);
    this.sock.addMembership(NFNLGRP_NFTRACE);
  }

  /** Subscribed when this returns: every traced packet from now on is seen. */
  static open(ifname: (index: number) => string | undefined = () => undefined): TraceListener {
    return new TraceListener(ifname);
  }

  events(): TraceEvent[] {
    return [...this.list];
  }

  /** Events of the packets that passed the trace table `table` (family `family`). */
  eventsOf(table: string, family: string): TraceEvent[] {
    const ids = new Set(this.list.filter((e) => e.table === table && e.family === family).map((e) => e.id));
    return this.list.filter((e) => ids.has(e.id));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.close();
  }
}
