/** Durations as Kubernetes flags write them: "40s", "5m", "1h30m", "500ms", "2.5s", and a bare "0" (as Go's time.ParseDuration). */
export function parseDuration(text: string, flag: string): number {
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let consumed = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text))) {
    if (m.index !== consumed) break;
    consumed += m[0].length;
    const n = Number(m[1]);
    total += n * (m[2] === 'ms' ? 1 : m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 3_600_000);
  }
  if (!text || consumed !== text.length) throw new Error(`${flag} ${JSON.stringify(text)} is not a duration like 40s, 5m, 1h30m or 500ms`);
  return Math.round(total);
}
