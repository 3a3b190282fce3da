import type { Envelope } from "../events/envelope.ts";
import { decide } from "../policy/engine.ts";
import type { DispatchContext } from "./context.ts";
import type { TaskTrace } from "./trace.ts";

/** The policy decision for one delivery, the record of it kept on the delivery, and its policy.eval span. */
export async function evaluate(
  ctx: DispatchContext,
  d: { tenant: string; endpoint: string },
  envelope: Envelope,
  trace: TaskTrace,
) {
  const t = trace.begin();
  const decision = decide(await ctx.policies(d.tenant), envelope, { kind: "dispatch", target: d.endpoint });
  const record = {
    effect: decision.effect,
    policy: decision.policy && {
      name: decision.policy.name,
      version: decision.policy.version,
      global: decision.policy.tenant === "*",
    },
    rule: decision.rule,
    ...(decision.ruleName ? { rule_name: decision.ruleName } : {}),
    reason: decision.reason,
  };
  // Rules are numbered from 1 for people (#1 is the first in `rules`); `rule` keeps the index.
  const rule =
    record.rule !== null ? `, rule #${record.rule + 1}${decision.ruleName ? ` ${decision.ruleName}` : ""}` : "";
  trace.end(
    t,
    "policy.eval",
    "ok",
    record.policy
      ? `${decision.effect} (${record.policy.global ? "global " : ""}policy ${record.policy.name} v${record.policy.version}${rule})`
      : `${decision.effect} (no policy matched)`,
  );
  return { decision, record };
}
