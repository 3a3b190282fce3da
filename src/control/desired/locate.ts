import type { Document, LineCounter, Pair } from "yaml";
import { yaml } from "../../core/yaml.ts";
import { pointerSegments } from "../resources/validate.ts";

/** 1-based, as editors and compilers print them. */
export interface Position {
  line: number;
  column: number;
}

/**
 * Where a JSON pointer lands in the YAML source. `key` points at a field's key (an unknown
 * field), `value` at its value (a wrong one). A pointer that runs out of nodes (a missing field)
 * lands on the deepest node that exists: the object that should have held it.
 */
export function positionOf(doc: Document, lines: LineCounter, pointer: string, target: "key" | "value"): Position {
  const { isAlias, isMap, isScalar, isSeq } = yaml();
  let node: unknown = doc.contents;
  let pair: Pair | undefined;
  for (const segment of pointerSegments(pointer)) {
    // An alias stands for its anchor's node; descend through it, but point at the alias itself.
    const container = isAlias(node) ? node.resolve(doc) : node;
    let next: Pair | unknown;
    if (isMap(container)) {
      pair = container.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === segment);
      next = pair ? (pair.value ?? pair.key) : undefined;
    } else if (isSeq(container)) {
      pair = undefined;
      next = container.items[Number(segment)];
    }
    if (next === undefined) break;
    node = next;
  }
  const at = target === "key" && pair ? pair.key : node;
  const { line, col } = lines.linePos(offsetOf(at));
  return { line, column: col };
}

function offsetOf(node: unknown): number {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return range?.[0] ?? 0;
}
