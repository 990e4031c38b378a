/**
 * A parameter cut (a fraction of the original's parameters removed) as a percentage with one
 * decimal, never rounded to a bound it has not reached: a pruned model that keeps 15 of 34,051
 * parameters is `99.96%`, not `100.0%` (which would say nothing is left), and one that cut a
 * single parameter of many is `0.003%`, not `0.0%`. Extra decimals only as far as needed (at most
 * four), then `>99.9999%` / `<0.0001%`.
 */
export function formatParamCut(cut: number): string {
  const percent = cut * 100;
  for (let digits = 1; digits <= 4; digits++) {
    const text = percent.toFixed(digits);
    const shown = Number(text);
    if ((shown === 100 && cut < 1) || (shown === 0 && cut > 0)) continue;
    return `${text}%`;
  }
  return cut < 1 && cut > 0.5 ? '>99.9999%' : cut > 0 && cut <= 0.5 ? '<0.0001%' : `${percent.toFixed(1)}%`;
}
