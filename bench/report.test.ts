import { spawnSync } from "node:child_process";
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  figure,
  isMet,
  isNoisy,
  mergeRuns,
  type Report,
  renderJson,
  renderMarkdown,
  renderTable,
  type SectionResult,
  writeReport,
} from "./report.ts";

const smtp = (reuse: number, postfix: number): SectionResult => ({
  section: "smtp",
  figures: [
    figure("agentowl durable accept, reuse", reuse, "msg/s", {
      p50: 10,
      p99: 40,
      cpuMsPer1000: 900,
      peakRssMiB: 180,
      vs: [
        { role: "reference", name: "Postfix durable accept", value: postfix },
        { role: "ceiling", name: "smtp-sink", value: 20_000 },
      ],
    }),
  ],
  targets: [{ name: "reuse / Postfix durable accept", measured: reuse / postfix, op: ">=", bound: 3, unit: "x" }],
  notes: [],
});

function report(sections: SectionResult[], loadBefore = [0.4, 0.5, 0.6]): Report {
  const machine = {
    cores: 2,
    cpu: "test cpu",
    memoryGiB: 24,
    kernel: "6.1.0",
    bun: "1.4.5",
    loadBefore,
    loadAfter: [1, 1, 1],
  };
  return {
    startedAt: "2026-12-06T05:00:00.000Z",
    finishedAt: "2026-12-06T05:05:00.000Z",
    runs: 1,
    profile: "default profile",
    machine,
    noisy: isNoisy(machine),
    sections,
  };
}

describe("benchmark report", () => {
  test("a figure carries its ratio to each same-run comparison", () => {
    const f = smtp(2400, 800).figures[0]!;
    expect(f.vs!.map((c) => [c.role, c.ratio])).toEqual([
      ["reference", 3],
      ["ceiling", 0.12],
    ]);
  });

  test("a target is met or not by its operator and bound", () => {
    expect(isMet({ name: "a", measured: 3, op: ">=", bound: 3, unit: "x" })).toBe(true);
    expect(isMet({ name: "a", measured: 150, op: "<", bound: 150, unit: " ms" })).toBe(false);
    expect(isMet({ name: "a", measured: 149.9, op: "<", bound: 150, unit: " ms" })).toBe(true);
    expect(isMet({ name: "a", measured: 200_000, op: ">", bound: 200_000, unit: "/s" })).toBe(false);
  });

  test("a run whose load before start is over 0.5 per core is noisy", () => {
    expect(isNoisy({ cores: 2, loadBefore: [1.0, 0, 0] })).toBe(false);
    expect(isNoisy({ cores: 2, loadBefore: [1.01, 0, 0] })).toBe(true);
    expect(isNoisy({ cores: 4, loadBefore: [1.5, 9, 9] })).toBe(false);
  });

  test("several runs merge into medians, each ratio the median of the per-run ratios", () => {
    const m = mergeRuns([smtp(2400, 800), smtp(3000, 600), smtp(1000, 1000)]);
    const f = m.figures[0]!;
    expect(f.value).toBe(2400);
    expect(f.vs![0]!.value).toBe(800);
    // Per-run ratios 3, 5 and 1: the median is 3, not 2400 / 800 of different runs by chance.
    expect(f.vs![0]!.ratio).toBe(3);
    expect(m.targets[0]!.measured).toBe(3);
    expect(isMet(m.targets[0]!)).toBe(true);
  });

  test("a median of fewer runs than the report's (a reference missing in some) says so, and a note says in how many runs", () => {
    const without: SectionResult = {
      ...smtp(1700, 900),
      figures: [figure("agentowl durable accept, reuse", 1700, "msg/s")],
      targets: [],
      notes: ["Postfix's durable accept missing"],
    };
    const m = mergeRuns([without, smtp(1600, 800), without, without, without]);
    expect(m.figures[0]!.value).toBe(1700);
    // The one run that had Postfix still gives its ratio, but not as a median of 5.
    expect(m.figures[0]!.vs![0]!.ratio).toBe(2);
    expect(m.targets[0]!.measured).toBe(2);
    expect(m.notes).toContain("Postfix's durable accept missing (in 4 of 5 runs)");
    expect(m.notes).toContain(
      'target "reuse / Postfix durable accept": the median of 1 of 5 runs (the others did not measure it)',
    );
    expect(m.notes).toContain(
      "agentowl durable accept, reuse beside Postfix durable accept: the median of 1 of 5 runs (the others did not measure it)",
    );
    // Nothing is said of what every run measured.
    const whole = mergeRuns([smtp(2400, 800), smtp(3000, 600)]);
    expect(whole.notes).toEqual([]);
  });

  test("the JSON is valid and spells out met / not met and the noisy mark", () => {
    const r = report(
      [smtp(2400, 800), smtp(1600, 800)].map((s, i) => ({ ...s, section: `smtp${i}` })),
      [1.6, 1, 1],
    );
    const parsed = JSON.parse(renderJson(r));
    expect(parsed.noisy).toBe(true);
    expect(parsed.machine.loadBefore).toEqual([1.6, 1, 1]);
    expect(parsed.sections[0].targets[0].met).toBe(true);
    expect(parsed.sections[1].targets[0].met).toBe(false);
    expect(parsed.sections[0].figures[0].vs[0].ratio).toBe(3);
  });

  test("the Markdown has the machine, a row per figure with its ratios, the targets with met / not met, and the notes", () => {
    const missing: SectionResult = {
      ...smtp(1600, 800),
      notes: ["Postfix's durable accept missing: postfix not installed"],
    };
    const md = renderMarkdown(report([missing]));
    expect(md).toContain("2 cores (test cpu), 24 GiB, Linux 6.1.0, Bun 1.4.5; load before 0.40 0.50 0.60");
    expect(md).not.toContain("NOISY");
    expect(md).toContain(
      "| smtp | agentowl durable accept, reuse | 1,600 msg/s | 10 | 40 | 900 | 180 | 2.00x Postfix durable accept (800); 0.08x smtp-sink (ceiling 20,000) |",
    );
    expect(md).toContain("| smtp | reuse / Postfix durable accept | 2.00x | ≥ 3x | **not met** |");
    expect(md).toContain("0 of 1 targets met.");
    expect(md).toContain("- smtp: Postfix's durable accept missing: postfix not installed");
    const noisy = renderMarkdown(report([smtp(2400, 800)], [1.2, 1, 1]));
    expect(noisy.split("\n")[0]).toBe("# Benchmark report (noisy)");
    expect(noisy).toContain("NOISY: load before start over 0.5 per core (0.60)");
    expect(noisy).toContain("| met |");
  });

  test("the console table lists every figure and target", () => {
    const t = renderTable(report([smtp(2400, 800)], [1.2, 1, 1]));
    expect(t.startsWith("NOISY RUN.")).toBe(true);
    expect(t).toMatch(/agentowl durable accept, reuse\s+2,400 msg\/s\s+10\s+40\s+900\s+180\s+3\.00x Postfix/);
    expect(t).toMatch(/reuse \/ Postfix durable accept\s+3\.00x\s+≥ 3x\s+met/);
  });

  test("writeReport writes the stamped pair always and latest.{json,md} only for a run of every section", () => {
    const dir = mkdtempSync(join(tmpdir(), "agentowl-report-"));
    try {
      const r = report([smtp(2400, 800)]);
      const some = writeReport(r, dir, false);
      expect(some.map((p) => p.slice(dir.length + 1))).toEqual([
        "2026-12-06T05-00-00-000Z.json",
        "2026-12-06T05-00-00-000Z.md",
      ]);
      const all = writeReport(r, dir, true);
      expect(all.map((p) => p.slice(dir.length + 1)).slice(2)).toEqual(["latest.json", "latest.md"]);
      expect(JSON.parse(readFileSync(join(dir, "latest.json"), "utf8")).sections[0].section).toBe("smtp");
      // Outside the repository the formatter takes no file: the copy is the report as rendered.
      expect(readFileSync(join(dir, "latest.md"), "utf8")).toBe(renderMarkdown(r));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("latest.{json,md} are written as the repository's formatter wants them, so a committed report passes the lint", () => {
    // Inside the repository (bench/), where `npm run lint` looks.
    const dir = mkdtempSync(join(import.meta.dir, ".report-test-"));
    try {
      const r = report([smtp(2400, 800)]);
      writeReport(r, dir, true);
      const files = [join(dir, "latest.json"), join(dir, "latest.md")];
      const biome = join(import.meta.dir, "..", "node_modules", ".bin", "biome");
      const check = spawnSync(biome, ["format", ...files], { encoding: "utf8" });
      expect(check.status, check.stdout + check.stderr).toBe(0);
      // The raw rendering's tables are not aligned: the check above would have failed on it.
      expect(readFileSync(join(dir, "latest.md"), "utf8")).not.toBe(renderMarkdown(r));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
