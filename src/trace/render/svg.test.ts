import { describe, expect, it } from 'vitest';
import type { TraceResult } from '../types.js';
import { renderSvg, xmlEscape } from './svg.js';
import { ALL, explainThreePaths, liveUdp, nodePortHostGw, unknownForeign } from './testdata.js';

interface El {
  name: string;
  attrs: Record<string, string>;
  /** Character data directly inside, entities decoded. */
  text: string;
  children: El[];
}

const ENTITY = /&(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);/g;
function decode(s: string): string {
  if (/&/.test(s.replace(ENTITY, ''))) throw new Error(`bare & in ${JSON.stringify(s)}`);
  return s.replace(ENTITY, (e) =>
    e === '&amp;' ? '&' : e === '&lt;' ? '<' : e === '&gt;' ? '>' : e === '&quot;' ? '"' : e === '&apos;' ? "'" : String.fromCodePoint(Number(e.startsWith('&#x') ? `0x${e.slice(3, -1)}` : e.slice(2, -1))),
  );
}

/**
 * A strict little XML well-formedness checker (no DOMParser in Node): balanced and properly
 * nested tags, one root element, quoted attributes without `<` and without repeats, no bare
 * `<` or `&` in character data, no characters XML 1.0 forbids. Returns the element tree.
 */
function parseXml(xml: string): El {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/.test(xml)) throw new Error('character not allowed in XML');
  const tag = /<!--[\s\S]*?-->|<(\/?)([A-Za-z_][\w.:-]*)((?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>/y;
  const attr = /\s+([A-Za-z_][\w.:-]*)\s*=\s*(?:"([^"<]*)"|'([^'<]*)')/g;
  const root: El = { name: '#document', attrs: {}, text: '', children: [] };
  const stack: El[] = [root];
  let i = xml.startsWith('<?xml') ? xml.indexOf('?>') + 2 : 0;
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const data = xml.slice(i, lt < 0 ? xml.length : lt);
    const top = stack[stack.length - 1]!;
    if (top === root && data.trim() !== '') throw new Error(`text outside the root: ${JSON.stringify(data)}`);
    top.text += decode(data);
    if (lt < 0) break;
    tag.lastIndex = lt;
    const m = tag.exec(xml);
    if (!m) throw new Error(`malformed markup at ${lt}: ${JSON.stringify(xml.slice(lt, lt + 40))}`);
    i = tag.lastIndex;
    if (m[0].startsWith('<!--')) continue;
    const [, close, name, attrText, selfClose] = m;
    if (close) {
      if (attrText || selfClose) throw new Error(`bad end tag ${m[0]}`);
      const open = stack.pop()!;
      if (open === root || open.name !== name) throw new Error(`</${name}> closes <${open.name}>`);
      continue;
    }
    const el: El = { name: name!, attrs: {}, text: '', children: [] };
    for (const a of attrText!.matchAll(attr)) {
      if (a[1]! in el.attrs) throw new Error(`attribute ${a[1]} repeated`);
      el.attrs[a[1]!] = decode(a[2] ?? a[3] ?? '');
    }
    if (top === root && root.children.length) throw new Error('more than one root element');
    top.children.push(el);
    if (!selfClose) stack.push(el);
  }
  if (stack.length !== 1) throw new Error(`unclosed <${stack[stack.length - 1]!.name}>`);
  const [svg] = root.children;
  if (!svg) throw new Error('no root element');
  return svg;
}

function all(el: El, name?: string): El[] {
  const out: El[] = [];
  const walk = (e: El): void => {
    if (!name || e.name === name) out.push(e);
    e.children.forEach(walk);
  };
  walk(el);
  return out;
}
const texts = (svg: El): string[] => all(svg, 'text').map((t) => t.text);
const num = (e: El, a: string): number => Number(e.attrs[a]);

describe('the well-formedness checker itself', () => {
  it('rejects what is not well-formed', () => {
    expect(() => parseXml('<a><b></a></b>')).toThrow(/closes/);
    expect(() => parseXml('<a>x & y</a>')).toThrow(/bare &/);
    expect(() => parseXml('<a>x < y</a>')).toThrow(/malformed/);
    expect(() => parseXml('<a t="<">x</a>')).toThrow(/malformed/);
    expect(() => parseXml('<a t=x></a>')).toThrow(/malformed/);
    expect(() => parseXml('<a t="1" t="2"></a>')).toThrow(/repeated/);
    expect(() => parseXml('<a>')).toThrow(/unclosed/);
    expect(() => parseXml('<a/><b/>')).toThrow(/more than one root/);
    expect(() => parseXml('<a>\x1b</a>')).toThrow(/not allowed/);
    expect(parseXml('<a k="&quot;1&quot;"><b>&lt;&amp;&gt;</b><c/></a>')).toMatchObject({
      name: 'a',
      attrs: { k: '"1"' },
      children: [{ name: 'b', text: '<&>' }, { name: 'c' }],
    });
  });
});

describe('renderSvg', () => {
  for (const [name, f] of Object.entries(ALL)) {
    it(`${name}: well-formed SVG whose every shape fits in its computed size`, () => {
      const out = renderSvg(f());
      const svg = parseXml(out);
      expect(svg.name).toBe('svg');
      expect(svg.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
      const w = num(svg, 'width');
      const h = num(svg, 'height');
      expect(w).toBeGreaterThan(300);
      expect(h).toBeGreaterThan(200);
      expect(svg.attrs.viewBox).toBe(`0 0 ${w} ${h}`);
      for (const r of all(svg, 'rect')) {
        expect(num(r, 'x')).toBeGreaterThanOrEqual(0);
        expect(num(r, 'y')).toBeGreaterThanOrEqual(0);
        expect(num(r, 'x') + num(r, 'width')).toBeLessThanOrEqual(w);
        expect(num(r, 'y') + num(r, 'height')).toBeLessThanOrEqual(h);
      }
      for (const t of all(svg, 'text')) expect(num(t, 'y')).toBeLessThanOrEqual(h);
    });
  }

  it('draws one lane per node, in the order the packet visits them, named', () => {
    const svg = parseXml(renderSvg(liveUdp()));
    const names = all(svg, 'text').filter((t) => t.attrs.class === 'lanename');
    expect(names.map((t) => t.text)).toEqual(['n1', 'n2']);
    expect(num(names[0]!, 'x')).toBeLessThan(num(names[1]!, 'x'));
    expect(all(svg, 'rect').filter((r) => r.attrs.class === 'lane')).toHaveLength(2);
  });

  it('draws a box per observation and an arrow between each consecutive pair and to the verdict', () => {
    const r = liveUdp();
    const svg = parseXml(renderSvg(r));
    const n = r.paths[0]!.observations.length;
    expect(all(svg, 'rect').filter((x) => x.attrs.class?.startsWith('box'))).toHaveLength(n);
    expect(all(svg, 'line').filter((l) => l.attrs['marker-end'] === 'url(#arrow)')).toHaveLength(n);
    const heads = all(svg, 'text').filter((t) => t.attrs.class === 'head').map((t) => t.text);
    expect(heads).toContain('Netfilter/LB · DNAT · kernel event');
    expect(heads).toContain('Transport · Encapsulated');
    // The one arrow across lanes goes from n1's lane to n2's.
    const lines = all(svg, 'line');
    const crossing = lines.filter((l) => l.attrs.x1 !== l.attrs.x2);
    expect(crossing).toHaveLength(1);
    expect(num(crossing[0]!, 'x1')).toBeLessThan(num(crossing[0]!, 'x2'));
  });

  it('labels transport hops with the encapsulation', () => {
    const vx = explainThreePaths();
    vx.paths = [vx.paths[1]!];
    expect(texts(parseXml(renderSvg(vx)))).toContain('VXLAN VNI 1 198.18.0.1→198.18.0.2');
    expect(texts(parseXml(renderSvg(liveUdp())))).toContain('UDP 198.18.0.1→198.18.0.2:8285');
    expect(texts(parseXml(renderSvg(nodePortHostGw())))).toContain('host-gw via 198.18.0.2');
  });

  it('annotates NAT', () => {
    const t = all(parseXml(renderSvg(nodePortHostGw())), 'text').filter((x) => x.attrs.class === 'nat').map((x) => x.text);
    expect(t).toEqual(['198.18.0.1:30080 → 10.244.2.5:8080 (DNAT)', '203.0.113.7:51000 → 198.18.0.1:51000 (masquerade)']);
  });

  it('colours the verdict green when delivered and red otherwise', () => {
    const fill = (r: TraceResult): string | undefined => all(parseXml(renderSvg(r)), 'rect').find((x) => x.attrs.class === 'verdict')?.attrs.fill;
    expect(fill(liveUdp())).toBe('#1a7f37');
    expect(fill(nodePortHostGw())).toBe('#1a7f37');
    for (const f of [ALL.droppedAtRouting, ALL.rejected, ALL.unknownForeign]) expect(fill(f())).toBe('#cf222e');
    const rej = texts(parseXml(renderSvg(ALL.rejected())));
    expect(rej[rej.length - 1]).toMatch(/TCP reset$/);
  });

  it('escapes text for XML, and the foreign rule is marked', () => {
    const out = renderSvg(unknownForeign());
    expect(out).not.toContain('<bad>');
    expect(out).not.toContain('\x1b');
    expect(out).toContain('&quot;&lt;bad&gt;&quot; &amp; co');
    expect(out).toContain('&apos;quote&apos;');
    const svg = parseXml(out);
    expect(texts(svg)).toContain('foreign rule in filter FORWARD: "<bad>" & co');
    expect(all(svg, 'rect').some((r) => r.attrs.class === 'box foreign')).toBe(true);
    expect(texts(svg)).toContain('foreign rule: reported, not interpreted');
    // The full rule (with its escape shown as text) is in the tooltip.
    expect(all(svg, 'title').some((t) => t.text.includes('rule: -A FORWARD -s 10.244.1.5/32 -m comment --comment "\\x1b[31mblock <bad> & \'quote\'" -j DROP'))).toBe(true);
  });

  it('escapes hostile names everywhere, lane names included', () => {
    const r = liveUdp();
    const evil = `n2"><script>alert('&')</script>`;
    for (const o of r.paths[0]!.observations) if (o.node === 'n2') o.node = evil;
    r.verdict = { ...r.verdict, node: evil };
    r.paths[0]!.verdict = r.verdict;
    r.from = `default/<client>`;
    const svg = parseXml(renderSvg(r));
    expect(all(svg, 'script')).toHaveLength(0);
    expect(all(svg, 'text').filter((t) => t.attrs.class === 'lanename').map((t) => t.text)).toEqual(['n1', evil]);
    expect(texts(svg)[0]).toBe('trace default/<client> → svc/default/web:80 (tcp, live)');
    expect(xmlEscape(`<a href="x">&'`)).toBe('&lt;a href=&quot;x&quot;&gt;&amp;&apos;');
  });

  it('with several paths draws one and lists every path with endpoint, probability and verdict', () => {
    const svg = parseXml(renderSvg(explainThreePaths()));
    expect(texts(svg)).toContain('3 paths (random load balancing)');
    // Legend entries are wrapped at word boundaries: read them joined.
    const t = texts(svg).join(' ');
    expect(t).toContain('path 1 (drawn) · 33.3% · 10.244.1.9:8080 (pod default/web-0 on n1) · Delivered to pod default/web-0 on n1 (10.244.1.9:8080)');
    expect(t).toContain('path 2 · 33.3% · 10.244.2.5:8080 (pod default/web-1 on n2) · Delivered to pod default/web-1 on n2 (10.244.2.5:8080)');
    expect(t).toContain('path 3 · 33.3% · 10.244.2.7:8080 (pod default/web-2 on n2) · Delivered');
    // Path 1 stays on n1.
    expect(all(svg, 'text').filter((x) => x.attrs.class === 'lanename').map((x) => x.text)).toEqual(['n1']);
  });

  it('draws the failing path when one fails, and colours it red in the legend', () => {
    const r = explainThreePaths();
    r.paths[2]!.verdict = { kind: 'Dropped', node: 'n2', at: 'drop comment "no local endpoints"', reason: 'no local endpoint' };
    r.verdict = r.paths[2]!.verdict;
    const svg = parseXml(renderSvg(r));
    const t = texts(svg);
    expect(t.join(' ')).toContain('path 3 (drawn) · 33.3% · 10.244.2.7:8080');
    expect(t).toContain('VXLAN VNI 1 198.18.0.1→198.18.0.2');
    expect(all(svg, 'text').filter((x) => x.attrs.class === 'lanename').map((x) => x.text)).toEqual(['n1', 'n2']);
    const squares = all(svg, 'rect').filter((x) => x.attrs.width === '10');
    expect(squares.map((x) => x.attrs.fill)).toEqual(['#1a7f37', '#1a7f37', '#cf222e']);
    expect(all(svg, 'rect').find((x) => x.attrs.class === 'verdict')?.attrs.fill).toBe('#cf222e');
  });

  it('grows with its content', () => {
    const small = parseXml(renderSvg(ALL.rejected()));
    const long = ALL.rejected();
    long.paths[0]!.observations[1]!.detail = 'x '.repeat(200);
    expect(num(parseXml(renderSvg(long)), 'height')).toBeGreaterThan(num(small, 'height'));
    const two = liveUdp();
    const three = liveUdp();
    for (const o of three.paths[0]!.observations.slice(-2)) o.node = 'n3';
    const w2 = num(parseXml(renderSvg(two)), 'width');
    const svg3 = parseXml(renderSvg(three));
    expect(all(svg3, 'text').filter((x) => x.attrs.class === 'lanename').map((x) => x.text)).toEqual(['n1', 'n2', 'n3']);
    expect(num(svg3, 'width')).toBeGreaterThan(w2 * 1.3);
  });
});
