import { ENDPOINT_URL_CHANGED } from "../control/service.ts";
import { APPROVAL_DECIDED } from "../store/index.ts";
import type { Subscriber } from "../workers/outbox-relay.ts";
import type { OperatorActions } from "./actions.ts";
import type { DispatchContext } from "./context.ts";

/** An approval decided: its parked deliveries run again (and find out which way it went). */
export function approvalFollower(ctx: DispatchContext): Subscriber {
  return {
    name: "dispatch-approvals",
    topics: [APPROVAL_DECIDED],
    async handle(entry) {
      const approvalId = (entry.payload as { id?: string })?.id;
      if (!approvalId) return;
      const parked = (await ctx.storage.events.listDeliveriesOfApproval(approvalId)).filter(
        (d) => d.state === "awaiting_approval",
      );
      if (!parked.length) return;
      await ctx.storage.committer.run((tx) => {
        for (const d of parked) ctx.enqueueTx(tx, d, `delivery:${d.id}:approval:${approvalId}`);
      });
    },
  };
}

/** An endpoint's URL changed (src/control/service.ts): what its deliveries waited for no longer holds. */
export function endpointFollower(actions: OperatorActions): Subscriber {
  return {
    name: "dispatch-endpoints",
    topics: [ENDPOINT_URL_CHANGED],
    async handle(entry) {
      const name = (entry.payload as { name?: string })?.name;
      if (entry.tenant && name) await actions.unblock(entry.tenant, name);
    },
  };
}
