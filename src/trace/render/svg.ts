/**
 * `podnet trace --svg FILE`: a standalone SVG of one path through the cluster. One column
 * (swimlane) per node in the order the packet visits them, one box per observation
 * (component · action, a short detail, NAT changes, foreign / kernel-event marks), arrows
 * between consecutive observations — across lanes for transport hops, labelled with the
 * encapsulation —, and the verdict at the bottom (green when delivered, red otherwise).
 *
 * With several paths (random load balancing) one path is drawn — the first that ends with
 * the trace's verdict: the first failing one when any fails, else path 1 — and a legend
 * lists every path with its endpoint, probability and verdict. Full texts (rule, origin,
 * transport) are in each box's <title> (a tooltip in browsers). Pure; no dependencies.
 */
import type { Encapsulation, Observation, Packet, TraceResult, Verdict } from '../types.js';
import {
  byNode,
  changeText,
  endpointText,
  oneLine,
  originText,
  packetChanges,
  packetTuple,
  percent,
  sanitize,
  transportLabel,
  transportText,
  verdictLine,
} from './text.js';

/** Text as XML character data or attribute value: specials escaped, invalid characters replaced. */
export function xmlEscape(s: string): string {
  return sanitize(s)
    .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]|[\ufffe\uffff]/g, '\ufffd')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

const FONT = 12;
/** Advance of one monospace character at FONT px (DejaVu Sans Mono / Menlo: 0.6 em). */
const CW = FONT * 0.6;
const LINE = 15;
const M = 20;
const PAD = 8;
const LANE_GAP = 48;
const MIN_BOX_CHARS = 28;
const MAX_BOX_CHARS = 52;
const MAX_TEXT_CHARS = 120;
const GREEN = '#1a7f37';
const RED = '#cf222e';

const chars = (s: string): number => Array.from(s).length;
function truncate(s: string, n: number): string {
  const a = Array.from(s);
  return a.length <= n ? s : a.slice(0, Math.max(1, n - 1)).join('') + '…';
}
/** Greedy word wrap to `n` characters per line (long words cut). */
function wrap(s: string, n: number): string[] {
  const out: string[] = [];
  let line = '';
  for (let word of s.split(/\s+/).filter(Boolean)) {
    while (chars(word) > n) {
      if (line) {
        out.push(line);
        line = '';
      }
      const a = Array.from(word);
      out.push(a.slice(0, n).join(''));
      word = a.slice(n).join('');
    }
    if (!word) continue;
    if (!line) line = word;
    else if (chars(line) + 1 + chars(word) <= n) line += ' ' + word;
    else {
      out.push(line);
      line = word;
    }
  }
  if (line) out.push(line);
  return out.length ? out : [''];
}

interface Line {
  text: string;
  cls: 'head' | 'detail' | 'nat' | 'mark' | 'rule';
}

interface Box {
  obs: Observation;
  lane: number;
  lines: Line[];
  title: string;
  y: number;
  h: number;
}

function boxLines(o: Observation, before: Packet, maxc: number): Line[] {
  const head = `${oneLine(o.component)} · ${oneLine(o.action)}${o.live ? ' · kernel event' : ''}`;
  const lines: Line[] = [{ text: truncate(head, maxc), cls: 'head' }];
  if (o.foreign) lines.push({ text: truncate('foreign rule: reported, not interpreted', maxc), cls: 'mark' });
  const detail = wrap(oneLine(o.detail), maxc);
  lines.push({ text: detail[0]!, cls: 'detail' });
  if (detail.length > 1) lines.push({ text: truncate(detail.slice(1).join(' '), maxc), cls: 'detail' });
  for (const c of packetChanges(before, o.packet, o.action)) lines.push({ text: truncate(changeText(c), maxc), cls: 'nat' });
  if (o.rule) lines.push({ text: truncate(oneLine(o.rule), maxc), cls: 'rule' });
  return lines;
}

function boxTitle(o: Observation): string {
  const t = [`${o.node}: ${o.component} ${o.action}`, oneLine(o.detail)];
  if (o.rule) t.push(`rule: ${oneLine(o.rule)}${o.where ? ` (where: ${oneLine(o.where)})` : ''}`);
  else if (o.where) t.push(`where: ${oneLine(o.where)}`);
  if (o.origin?.length) t.push(`from: ${originText(o.origin)}`);
  if (o.transport) t.push(`transport: ${transportText(o.transport, o.packet.size)}`);
  t.push(`packet: ${packetTuple(o.packet)}`);
  if (o.foreign) t.push('foreign rule: not written by podnet, not interpreted');
  if (o.live) t.push('seen in a kernel trace event');
  return t.join('\n');
}

const verdictColour = (v: Verdict): string => (v.kind === 'Delivered' ? GREEN : RED);

/** Which path to draw: the first that ends the way the trace does. */
function drawnPath(r: TraceResult): number {
  if (r.paths.length === 0) return -1;
  if (r.verdict.kind !== 'Delivered') {
    const i = r.paths.findIndex((p) => p.verdict.kind !== 'Delivered');
    if (i >= 0) return i;
  }
  return 0;
}

export function renderSvg(r: TraceResult): string {
  const pi = drawnPath(r);
  const path = pi >= 0 ? r.paths[pi]! : undefined;
  const obs = path?.observations ?? [];
  const verdict = path && r.paths.length > 1 ? path.verdict : r.verdict;

  // Lanes: nodes in the order the packet first reaches them.
  const lanes: string[] = [];
  for (const g of byNode(obs)) if (!lanes.includes(g.node)) lanes.push(g.node);
  if (verdict.node && !lanes.includes(verdict.node)) lanes.push(verdict.node);

  // Box text first: it decides the lane width.
  const longest = Math.max(0, ...obs.flatMap((o) => [oneLine(o.detail), `${o.component} · ${o.action}${o.live ? ' · kernel event' : ''}`].map(chars)));
  const maxc = Math.min(MAX_BOX_CHARS, Math.max(MIN_BOX_CHARS, longest));
  let prev = r.packet;
  const boxes: Box[] = obs.map((o) => {
    const lines = boxLines(o, prev, maxc);
    prev = o.packet;
    return { obs: o, lane: lanes.indexOf(o.node), lines, title: boxTitle(o), y: 0, h: PAD * 2 + lines.length * LINE - 3 };
  });
  const boxW = Math.ceil(maxc * CW + 2 * PAD);
  const laneW = boxW + 24;
  const lanesW = lanes.length * laneW + Math.max(0, lanes.length - 1) * LANE_GAP;

  // Texts outside the lanes, wrapped to the picture's width.
  const title = `trace ${oneLine(r.from)} → ${oneLine(r.to)} (${r.packet.proto}, ${r.mode})`;
  const sub = `packet ${packetTuple(r.packet)}, ${r.packet.size} bytes, IPv${r.packet.family}${
    r.paths.length > 1 ? ` · drawn: path ${pi + 1} of ${r.paths.length}` : ''
  }`;
  const textC = Math.max(80, Math.min(MAX_TEXT_CHARS, Math.floor(lanesW / CW) - 4));
  const vLines = wrap(verdictLine(verdict), textC);
  if (verdictLine(verdict) !== verdictLine(r.verdict)) vLines.push(...wrap(`trace verdict: ${verdictLine(r.verdict)}`, textC));
  const probe: string[] = [];
  if (r.probe) {
    probe.push(...wrap(`probe: ${oneLine(r.probe.result)}${r.probe.rttMs !== undefined ? `, rtt ${r.probe.rttMs} ms` : ''}`, textC));
    for (const c of r.probe.conntrack ?? []) probe.push(...wrap(`conntrack: ${oneLine(c).replace(/\s+/g, ' ')}`, textC));
  }
  const legend =
    r.paths.length > 1
      ? r.paths.map((p, i) => ({
          colour: verdictColour(p.verdict),
          lines: wrap(
            `path ${i + 1}${i === pi ? ' (drawn)' : ''} · ${percent(p.probability)}${p.endpoint ? ` · ${endpointText(p.endpoint, r.packet.proto)}` : ''} · ${verdictLine(p.verdict)}`,
            textC,
          ),
        }))
      : [];
  const widest = Math.max(chars(title) * (14 * 0.6) / CW, chars(sub), ...vLines.map(chars), ...probe.map(chars), ...legend.flatMap((l) => l.lines.map((x) => chars(x) + 3)));
  const contentW = Math.max(lanesW, Math.ceil(widest * CW) + 2 * PAD, 360);
  const width = contentW + 2 * M;
  const laneX = (i: number): number => M + i * (laneW + LANE_GAP);
  const cx = (i: number): number => laneX(i) + laneW / 2;

  // Vertical layout: rows in time order; more room above a box reached across lanes.
  const lanesTop = M + 48;
  let y = lanesTop + 28 + 16;
  const labels: { x: number; y: number; text: string }[] = [];
  let lastTransport: Encapsulation | undefined;
  boxes.forEach((b, i) => {
    const p = boxes[i - 1];
    if (p) {
      const crossing = p.lane !== b.lane;
      if (crossing) {
        const label = lastTransport ? transportLabel(lastTransport) : `${p.obs.node} → ${b.obs.node}`;
        y += 24;
        labels.push({ x: (cx(p.lane) + cx(b.lane)) / 2, y: y - 2, text: label });
        y += 24;
        lastTransport = undefined;
      } else y += 18;
    }
    b.y = y;
    y += b.h;
    if (b.obs.transport) lastTransport = b.obs.transport;
  });
  const lanesBottom = y + 16;
  const verdictY = lanesBottom + 24;
  const verdictH = PAD * 2 + vLines.length * LINE;
  let bottom = verdictY + verdictH;
  const probeY = bottom + 8;
  if (probe.length) bottom = probeY + probe.length * LINE + 4;
  const legendY = bottom + 16;
  const legendLines = legend.reduce((n, l) => n + l.lines.length, 0);
  if (legend.length) bottom = legendY + PAD * 2 + (legendLines + 1) * LINE;
  const height = bottom + M;

  const out: string[] = [];
  const text = (x: number, ty: number, s: string, attrs = ''): void => {
    out.push(`<text x="${x}" y="${ty}"${attrs ? ' ' + attrs : ''}>${xmlEscape(s)}</text>`);
  };
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="${FONT}">`,
    `<title>${xmlEscape(`${title}: ${verdictLine(r.verdict)}`)}</title>`,
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#57606a"/></marker></defs>',
    '<style>.head{font-weight:bold;fill:#24292f}.detail{fill:#24292f}.nat{fill:#8250df;font-weight:bold}.mark{fill:#bc4c00;font-weight:bold}.rule{fill:#6e7781}.lane{fill:#f6f8fa;stroke:#d0d7de}.lanename{font-weight:bold;font-size:13px}.box{fill:#ffffff;stroke:#8c959f}.box.fail{stroke:#cf222e;stroke-width:2}.box.foreign{stroke:#bc4c00;stroke-dasharray:5 3;stroke-width:2}.box.live{fill:#fbefff}.hop{fill:#ffffff;stroke:#0969da}.hoptext{fill:#0969da}</style>',
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
  );
  text(M, M + 14, title, 'font-size="14" font-weight="bold"');
  text(M, M + 32, sub, 'fill="#57606a"');

  // Lanes.
  lanes.forEach((n, i) => {
    out.push(`<rect class="lane" x="${laneX(i)}" y="${lanesTop}" width="${laneW}" height="${lanesBottom - lanesTop}" rx="6"/>`);
    text(cx(i), lanesTop + 19, truncate(oneLine(n), Math.floor(laneW / CW) - 2), 'class="lanename" text-anchor="middle"');
  });

  // Arrows (drawn before the boxes and labels so those sit on top).
  const arrow = (x1: number, y1: number, x2: number, y2: number): void => {
    out.push(`<line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" stroke="#57606a" stroke-width="1.5" marker-end="url(#arrow)"/>`);
  };
  boxes.forEach((b, i) => {
    const p = boxes[i - 1];
    if (p) arrow(cx(p.lane), p.y + p.h, cx(b.lane), b.y);
  });
  const last = boxes[boxes.length - 1];
  if (last) arrow(cx(last.lane), last.y + last.h, cx(last.lane), verdictY);

  // Transport labels.
  for (const l of labels) {
    const w = Math.ceil(chars(l.text) * CW) + 12;
    out.push(`<rect class="hop" x="${l.x - w / 2}" y="${l.y - 13}" width="${w}" height="18" rx="4"/>`);
    text(l.x, l.y, l.text, 'class="hoptext" text-anchor="middle"');
  }

  // Boxes.
  for (const b of boxes) {
    const cls = ['box'];
    if (b.obs.action === 'Dropped' || b.obs.action === 'Rejected') cls.push('fail');
    if (b.obs.foreign) cls.push('foreign');
    if (b.obs.live) cls.push('live');
    const x = cx(b.lane) - boxW / 2;
    out.push(`<g><title>${xmlEscape(b.title)}</title>`);
    out.push(`<rect class="${cls.join(' ')}" x="${x}" y="${b.y}" width="${boxW}" height="${b.h}" rx="4"/>`);
    b.lines.forEach((l, k) => text(x + PAD, b.y + PAD + 10 + k * LINE, l.text, `class="${l.cls}"`));
    out.push('</g>');
  }

  // Verdict, probe, legend.
  const colour = verdictColour(verdict);
  out.push(`<rect class="verdict" x="${M}" y="${verdictY}" width="${contentW}" height="${verdictH}" rx="6" fill="${colour}"/>`);
  vLines.forEach((l, k) => text(M + PAD, verdictY + PAD + 11 + k * LINE, l, 'fill="#ffffff" font-weight="bold"'));
  probe.forEach((l, k) => text(M, probeY + 11 + k * LINE, l, 'fill="#24292f"'));
  if (legend.length) {
    out.push(`<rect x="${M}" y="${legendY}" width="${contentW}" height="${bottom - legendY}" rx="6" fill="#ffffff" stroke="#d0d7de"/>`);
    text(M + PAD, legendY + PAD + 11, `${r.paths.length} paths (random load balancing)`, 'font-weight="bold"');
    let k = 1;
    for (const l of legend) {
      const ly = legendY + PAD + 11 + k * LINE;
      out.push(`<rect x="${M + PAD}" y="${ly - 9}" width="10" height="10" fill="${l.colour}"/>`);
      l.lines.forEach((s, j) => text(M + PAD + 3 * CW, ly + j * LINE, s));
      k += l.lines.length;
    }
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
