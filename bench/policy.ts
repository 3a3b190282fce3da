/**
 * `npm run bench -- policy`: decisions per second of a compiled 100-rule policy, evaluated in its
 * worst case (no rule matches, so all 100 are tried), beside a hand-written function making the
 * same 100 comparisons in straight-line code, in the same run.
 */
import type { Envelope } from "../src/events/envelope.ts";
import { type Action, compilePolicy } from "../src/policy/engine.ts";
import type { PolicySpec } from "../src/control/resources/specs.ts";
import { per1000, selfMeter } from "./measure.ts";
import { figure, type SectionResult } from "./report.ts";

const N = Number(process.env.BENCH_POLICY_DECISIONS ?? 2_000_000);

const event: Envelope = {
  id: "evt_01M80MPAZ9E8MRS0YPNR25EEF9",
  version: 1,
  type: "email.received",
  tenant: "beta",
  agent: "hello",
  channel: "email",
  source: { binding: "mail" },
  received_at: "2026-11-21T14:02:11.043Z",
  trace_id: "T-1",
  idempotency_key: null,
  data: { subject: "Quarterly report", from: { address: "ann@example.com" }, auth: { dmarc: "pass" } },
};
const action: Action = { kind: "dispatch", target: "crm" };

/** 100 rules of five shapes, none of which matches the event. */
function hundredRules(): PolicySpec {
  const rules: PolicySpec["rules"] = [];
  for (let i = 0; i < 100; i++) {
    const when: PolicySpec["rules"][number]["when"] = [
      { channel: "email", agent: `agent-${i}` },
      { "data.subject": { contains: `refund-${i}` } },
      { target: `endpoint-${i}` },
      { "auth.dmarc": { in: ["fail", `x-${i}`] } },
      { "data.from.address": { matches: `^blocked-${i}@` } },
    ][i % 5]!;
    rules.push({ when, effect: i % 2 ? "deny" : "quarantine" });
  }
  return { name: "big", default: "allow", rules };
}

/** The reference: the same 100 comparisons, hand-written, no closures. */
function reference(e: Envelope, a: Action): string {
  const subject = (e.data.subject as string) ?? "";
  const address = ((e.data.from as { address?: string }) ?? {}).address ?? "";
  const dmarc = (e.data.auth as { dmarc?: string }).dmarc;
  const target = a.kind === "dispatch" ? a.target : undefined;
  for (let i = 0; i < 100; i++) {
    switch (i % 5) {
      case 0:
        if (e.channel === "email" && e.agent === `agent-${i}`) return "hit";
        break;
      case 1:
        if (subject.includes(`refund-${i}`)) return "hit";
        break;
      case 2:
        if (target === `endpoint-${i}`) return "hit";
        break;
      case 3:
        if (dmarc === "fail" || dmarc === `x-${i}`) return "hit";
        break;
      default:
        if (address.startsWith(`blocked-${i}@`)) return "hit";
    }
  }
  return "allow";
}

function rate(fn: () => unknown): number {
  for (let i = 0; i < 20_000; i++) fn();
  const t = performance.now();
  for (let i = 0; i < N; i++) fn();
  return Math.round((N * 1000) / (performance.now() - t));
}

export async function benchPolicy(): Promise<SectionResult> {
  const policy = compilePolicy(hundredRules(), { tenant: "beta", name: "big", version: 1 });
  if (policy.decide(event, action).effect !== "allow" || reference(event, action) !== "allow")
    throw new Error("the benchmark's event must match no rule");
  const meter = selfMeter();
  const ours = rate(() => policy.decide(event, action));
  const cpu = per1000(meter.cpuMs(), N + 20_000);
  const ref = rate(() => reference(event, action));
  console.log(
    `policy decisions, a 100-rule policy, no rule matching (all 100 tried), ${N.toLocaleString("en-US")} decisions`,
  );
  console.log(`   compiled policy: ${ours.toLocaleString("en-US")} decisions/s (target > 200,000)`);
  console.log(`   hand-written reference, same comparisons: ${ref.toLocaleString("en-US")} decisions/s`);
  console.log(`   ratio: ${(ours / ref).toFixed(2)}x the hand-written code\n`);
  return {
    section: "policy",
    figures: [
      figure("hand-written reference, same 100 comparisons", ref, "decisions/s"),
      figure("compiled 100-rule policy, no rule matching", ours, "decisions/s", {
        cpuMsPer1000: cpu,
        vs: [{ role: "reference", name: "hand-written code", value: ref }],
      }),
    ],
    targets: [{ name: "decisions per second", measured: ours, op: ">", bound: 200_000, unit: "/s" }],
    notes: [],
  };
}

if (import.meta.main) await benchPolicy();
