/**
 * The MIME-parse stage over every message of the shared corpus, to see what a parser change
 * changes:
 *
 *   bun scripts/parse-corpus.ts snapshot <file.json>   parse all and write each result
 *   bun scripts/parse-corpus.ts diff <before.json> <after.json>
 *                                                       the files whose parse differs, and how
 *
 * Take the "before" snapshot from a checkout of the old commit (git worktree add), the "after"
 * one here. The corpus is read from ../shared/corpus/email (or CORPUS_DIR).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Glob } from "bun";
import { type ParsedMail, parseMail } from "../src/mail/parse.ts";
import { BlobStore } from "../src/store/blobs.ts";

const [mode, a, b] = process.argv.slice(2);
if (mode === "snapshot" && a) {
  const corpus = process.env.CORPUS_DIR ?? join(import.meta.dir, "..", "..", "shared", "corpus", "email");
  const dir = mkdtempSync(join(tmpdir(), "parse-corpus-"));
  const blobs = new BlobStore(dir);
  const out: Record<string, ParsedMail> = {};
  for (const file of [...new Glob("**/*.eml").scanSync(corpus)].sort())
    out[file] = await parseMail(await Bun.file(join(corpus, file)).bytes(), { blobs });
  await Bun.write(a, JSON.stringify(out));
  rmSync(dir, { recursive: true, force: true });
  console.log(`${Object.keys(out).length} messages parsed into ${a}`);
  process.exit(0);
} else if (mode === "diff" && a && b) {
  const before = (await Bun.file(a).json()) as Record<string, ParsedMail>;
  const after = (await Bun.file(b).json()) as Record<string, ParsedMail>;
  const show = (v: unknown) => JSON.stringify(v).slice(0, 200);
  let changed = 0;
  for (const file of Object.keys(before)) {
    const x = before[file]!;
    const y = after[file];
    if (!y) {
      console.log(`${file}: missing after`);
      changed++;
      continue;
    }
    const keys = (Object.keys(x) as (keyof ParsedMail)[]).filter((k) => JSON.stringify(x[k]) !== JSON.stringify(y[k]));
    if (keys.length === 0) continue;
    changed++;
    console.log(`${file}: ${keys.join(", ")}`);
    for (const k of keys) {
      if (k === "parse_warnings") {
        console.log(
          `  warnings added: ${show(y[k].filter((w) => !x[k].includes(w)))}; removed: ${show(x[k].filter((w) => !y[k].includes(w)))}`,
        );
      } else if (k === "attachments") {
        const brief = (m: ParsedMail) => m.attachments.map((t) => [t.filename, t.content_type, t.size]);
        console.log(`  before ${show(brief(x))}\n  after  ${show(brief(y))}`);
      } else console.log(`  before ${show(x[k])}\n  after  ${show(y[k])}`);
    }
  }
  console.log(`${changed} of ${Object.keys(before).length} messages parse differently`);
} else {
  console.error("usage: bun scripts/parse-corpus.ts snapshot <file.json> | diff <before.json> <after.json>");
  process.exit(2);
}
