/**
 * The smtp section's figures for the report (bench/report.ts), from what benchSmtp returns:
 * Postfix's durable accept as the reference, the durable floors (reuse: the accept alone, and the
 * accept with the processing the target includes), the appliance with and
 * without connection reuse at greeting delay 0 ms, with DKIM-signed messages (reuse), and the
 * backlog's drain after the burst. Each
 * number is the median over the section's own rounds (BENCH_SMTP_RUNS), each ratio taken within
 * its round. The no-disk ceilings (smtp-sink, smtp-server alone) are printed by the section only.
 */
import { figure, type Figure, median, type SectionResult, type Target } from "./report.ts";
import type { SmtpBenchResult } from "./smtp.ts";

export function smtpSection(r: SmtpBenchResult): SectionResult {
  const runs = r.runs;
  const m = (f: (x: (typeof runs)[number]) => number | undefined | null) =>
    median(runs.map(f).filter((x): x is number => typeof x === "number"));
  const pf = runs.every((x) => x.postfix);
  const figures: Figure[] = [];
  if (pf)
    for (const k of ["reuse", "fresh"] as const)
      figures.push(
        figure(
          `Postfix durable accept, ${k === "reuse" ? "reuse" : "one message per connection"} (reference)`,
          m((x) => x.postfix![k].perSec),
          "msg/s",
          {
            p50: m((x) => x.postfix![k].p50),
            p99: m((x) => x.postfix![k].p99),
            cpuMsPer1000: m((x) => x.postfix![k].cpuPer1k),
          },
        ),
      );
  figures.push(
    figure(
      "floor: smtp-server + group fdatasync + group commit, reuse",
      m((x) => x.floor.perSec),
      "msg/s",
      {
        p50: m((x) => x.floor.p50),
        p99: m((x) => x.floor.p99),
        cpuMsPer1000: m((x) => x.floor.cpuPer1k),
      },
    ),
  );
  // The least the pipeline the target asks for does (accept + parse + sender auth + event): where
  // it stands beside Postfix says how far the 3x target is in reach on this stack.
  const processing = figure(
    "floor with processing: the same + parse, sender auth and the event, reuse",
    m((x) => x.processingFloor.perSec),
    "msg/s",
    {
      p50: m((x) => x.processingFloor.p50),
      p99: m((x) => x.processingFloor.p99),
      cpuMsPer1000: m((x) => x.processingFloor.cpuPer1k),
    },
  );
  if (pf)
    processing.vs = [
      {
        role: "reference",
        name: "Postfix durable accept",
        value: m((x) => x.postfix!.reuse.perSec),
        ratio: m((x) => x.processingFloor.perSec / x.postfix!.reuse.perSec),
      },
    ];
  figures.push(processing);
  for (const k of ["reuse", "fresh"] as const) {
    const ours = figure(
      `agentowl durable accept, ${k === "reuse" ? "reuse" : "one message per connection"}, greeting 0 ms`,
      m((x) => x.agentowl[k].perSec),
      "msg/s",
      {
        p50: m((x) => x.agentowl[k].p50),
        p99: m((x) => x.agentowl[k].p99),
        cpuMsPer1000: m((x) => x.agentowl[k].cpuPer1k),
      },
    );
    // Ratios within each round, then their median.
    ours.vs = [];
    if (pf)
      ours.vs.push({
        role: "reference",
        name: "Postfix durable accept",
        value: m((x) => x.postfix![k].perSec),
        ratio: m((x) => x.agentowl[k].perSec / x.postfix![k].perSec),
      });
    if (k === "reuse")
      ours.vs.push({
        role: "floor",
        name: "smtp-server + fdatasync + commit",
        value: m((x) => x.floor.perSec),
        ratio: m((x) => x.agentowl.reuse.perSec / x.floor.perSec),
      });
    if (k === "reuse")
      ours.vs.push({
        role: "floor",
        name: "the floor with processing",
        value: m((x) => x.processingFloor.perSec),
        ratio: m((x) => x.agentowl.reuse.perSec / x.processingFloor.perSec),
      });
    figures.push(ours);
  }
  // Mail as most senders send it (no target: Postfix verifies no signature, the floor none either).
  const signed = figure(
    "agentowl durable accept, reuse, DKIM-signed messages (RSA-2048)",
    m((x) => x.agentowl.signed.perSec),
    "msg/s",
    {
      p50: m((x) => x.agentowl.signed.p50),
      p99: m((x) => x.agentowl.signed.p99),
      cpuMsPer1000: m((x) => x.agentowl.signed.cpuPer1k),
    },
  );
  signed.vs = [];
  if (pf)
    signed.vs.push({
      role: "reference",
      name: "Postfix durable accept, which verifies nothing",
      value: m((x) => x.postfix!.reuse.perSec),
      ratio: m((x) => x.agentowl.signed.perSec / x.postfix!.reuse.perSec),
    });
  signed.vs.push({
    role: "reference",
    name: "the same unsigned",
    value: m((x) => x.agentowl.reuse.perSec),
    ratio: m((x) => x.agentowl.signed.perSec / x.agentowl.reuse.perSec),
  });
  figures.push(signed);
  figures.push(figure("processing backlog after the burst (reuse), to drain", r.median.drainMs / 1000, "s"));
  const targets: Target[] = [];
  if (r.median.reuseVsPostfix !== null)
    targets.push({
      name: "reuse / Postfix durable accept",
      measured: r.median.reuseVsPostfix,
      op: ">=",
      bound: 3,
      unit: "x",
    });
  if (r.median.freshVsPostfix !== null)
    targets.push({
      name: "one message per connection / Postfix durable accept",
      measured: r.median.freshVsPostfix,
      op: ">=",
      bound: 1.5,
      unit: "x",
    });
  targets.push({
    name: "backlog after the 8 s burst drains",
    measured: r.median.drainMs / 1000,
    op: "<",
    bound: 2,
    unit: " s",
  });
  return {
    section: "smtp",
    figures,
    targets,
    notes: pf
      ? []
      : ["Postfix's durable accept missing (apt-get install postfix; needs root): no reference, its targets left out"],
  };
}
