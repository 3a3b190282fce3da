/**
 * Bounds a desired-state file must keep before the yaml library sees it (guarantee 9 (docs/guarantees.md)). The library's
 * work grows with nesting times size (its visitor copies the path at every node: a 10 KiB file
 * nested 5,000 deep took 5 s) and with aliases times size (each alias resolves by searching the
 * document), so both are counted first, in one pass over the lines, without parsing.
 *
 * The count is of what YAML can nest with: block indentation, compact entries on one line
 * (`- - x`, `? x`) and flow brackets (`[[[`), outside quotes, comments and block scalars. It may
 * over-count a little (a plain scalar continued on a deeper line) but never misses a level.
 */

/** Collections inside each other. The deepest real file (a template tool's config) is ~12. */
export const MAX_YAML_DEPTH = 64;
/** Alias nodes (`*name`) in one file: enough to share blocks, far too few to cost anything. */
export const MAX_YAML_ALIASES = 100;

export interface BoundProblem {
  line: number;
  column: number;
  message: string;
}

export function yamlBoundsProblem(text: string): BoundProblem | null {
  const indents: number[] = [];
  let flow = 0;
  let quote: '"' | "'" | null = null;
  /** Inside a block scalar (`|`, `>`): lines indented deeper than this are its text. */
  let scalarIndent = -1;
  let aliases = 0;
  let lineNo = 0;
  for (const line of text.split("\n")) {
    lineNo++;
    let i = 0;
    while (line[i] === " ") i++;
    const indent = i;
    const blank = i >= line.length || line[i] === "#" || line[i] === "\r";
    if (scalarIndent >= 0) {
      if (blank || indent > scalarIndent) continue;
      scalarIndent = -1;
    }
    if (blank && quote === null) continue;
    let compact = 0;
    if (quote === null && flow === 0) {
      // A block line: it closes every collection indented as deep or deeper, and opens one.
      while (indents.length && indents.at(-1)! >= indent) indents.pop();
      indents.push(indent);
      // `- - - x` and `? - x`: each indicator opens a collection on the same line.
      while (
        (line[i] === "-" || line[i] === "?") &&
        (i + 1 === line.length || line[i + 1] === " " || line[i + 1] === "\r")
      ) {
        compact++;
        i++;
        while (line[i] === " ") i++;
      }
    }
    const deep = (column: number) => ({
      line: lineNo,
      column,
      message: `nested more than ${MAX_YAML_DEPTH} levels deep: flatten the file`,
    });
    if (indents.length + compact + flow > MAX_YAML_DEPTH) return deep(i + 1);
    let end = line.length;
    for (; i < line.length; i++) {
      const ch = line[i]!;
      if (quote !== null) {
        if (quote === '"' && ch === "\\") i++;
        else if (ch === quote) {
          if (quote === "'" && line[i + 1] === "'") i++;
          else quote = null;
        }
        continue;
      }
      const prev = i === 0 ? " " : line[i - 1]!;
      const tokenStart = prev === " " || prev === "\t" || prev === "[" || prev === "{" || prev === "," || prev === ":";
      if (ch === "#" && (prev === " " || prev === "\t" || i === 0)) {
        end = i;
        break;
      }
      if ((ch === '"' || ch === "'") && (tokenStart || i === indent)) quote = ch;
      else if (ch === "[" || ch === "{") {
        flow++;
        if (indents.length + compact + flow > MAX_YAML_DEPTH) return deep(i + 1);
      } else if (ch === "]" || ch === "}") flow = Math.max(0, flow - 1);
      else if (ch === "*" && (tokenStart || i === indent) && ++aliases > MAX_YAML_ALIASES) {
        return {
          line: lineNo,
          column: i + 1,
          message: `more than ${MAX_YAML_ALIASES} aliases (*name): write the values out`,
        };
      }
    }
    // `key: |`, `- >-`: the lines after it that are indented deeper are text, not structure.
    if (quote === null && flow === 0 && /(?:^|\s)[|>][-+1-9]{0,2}\s*$/.test(line.slice(0, end))) scalarIndent = indent;
  }
  return null;
}
