import { Elysia } from "elysia";
import { EventPage, type EventActions } from "../../web/index.ts";
import { canAccess } from "../api/auth.ts";
import { isId } from "../core/ids.ts";
import { AppError, isAppError } from "../errors/index.ts";
import type { StoredEvent as Stored } from "../store/index.ts";

type StoredEvent = Stored & { tenant: string };
import { redirect } from "./headers.ts";
import { type ConsoleKit, formOf, NAME, sentCsrf, type Visitor } from "./kit.ts";
import { sameSecret } from "./auth.ts";
import { eventView } from "./views.ts";

type Message = EventActions["message"];

/**
 * The event page's buttons for a user who may change the event's tenant: replay to all targets
 * or to each of the tenant's endpoints; retry and discard per delivery. Null for anyone else.
 */
export async function eventActions(kit: ConsoleKit, v: Visitor, event: StoredEvent, message: Message = null) {
  if (!kit.deps.dispatch || !canAccess(v.principal, event.tenant, "write")) return null;
  const endpoints = await kit.storage.resources.list({ tenant: event.tenant, kind: "endpoints", limit: 500 });
  return { csrf: v.session.csrf, endpoints: endpoints.map((e) => e.name), message } satisfies EventActions;
}

/**
 * Replay, retry and discard from the event page (docs/console.md#actions): each through the
 * dispatcher's operator actions as /v1 calls them, as the user's principal, so the audit log
 * names `user:<name>`. Done: 303 back to the event. Refused (a conflict): the event page again
 * with the refusal's one line, 409.
 */
/** The event page: the event, its deliveries with their attempts, and (with a message above them) its actions. */
export async function eventPage(
  kit: ConsoleKit,
  v: Visitor,
  event: StoredEvent,
  message: Message = null,
  status = 200,
) {
  const rows = await kit.storage.events.deliveries({ eventId: event.envelope.id, limit: 100 });
  const deliveries = await Promise.all(
    rows.map(async (row) => ({ row, attempts: await kit.storage.events.listAttempts(row.id) })),
  );
  return kit.html(
    EventPage({
      chrome: kit.chromeFor(v, "events"),
      view: eventView(event, deliveries),
      actions: await eventActions(kit, v, event, message),
    }),
    status,
  );
}

export function actionsRoutes(kit: ConsoleKit) {
  const { storage, signedIn, notFound, refused } = kit;

  /** CSRF, then the event (404 when the user may not see it, 403 when only read), then the action. */
  const act = (
    run: (v: Visitor, event: StoredEvent, form: URLSearchParams, id: string) => Promise<void>,
    eventOf: (id: string) => Promise<StoredEvent | null>,
  ) =>
    signedIn(async (v, { request, params }: { request: Request; params: { id: string } }) => {
      const form = await formOf(request);
      if (!sameSecret(v.session.csrf, sentCsrf(request, form)))
        return refused(v, "The request carried no valid CSRF token.");
      const event = await eventOf(params.id);
      if (!event || !canAccess(v.principal, event.tenant, "read")) return notFound(v);
      if (!canAccess(v.principal, event.tenant, "write") || !kit.deps.dispatch)
        return refused(v, `You may only read tenant ${event.tenant}.`);
      try {
        await run(v, event, form, params.id);
      } catch (e) {
        if (isAppError(e) && (e.kind === "conflict" || e.kind === "not_found"))
          return eventPage(kit, v, event, { text: e.detail, kind: "error" }, e.kind === "conflict" ? 409 : 404);
        throw e;
      }
      return redirect(`/console/events/${event.envelope.id}#deliveries`, 303);
    });

  const eventById = async (id: string) => (isId(id, "evt") ? storage.events.get(id) : null);
  /** The delivery's event: a delivery is seen and changed as its event's tenant allows. */
  const eventOfDelivery = async (id: string) => {
    const d = isId(id, "dlv") ? await storage.events.getDelivery(id) : null;
    return d ? storage.events.get(d.eventId) : null;
  };
  const delivery = async (id: string) => {
    const d = await storage.events.getDelivery(id);
    if (!d) throw new AppError("not_found", "not found");
    return d;
  };

  return new Elysia({ name: "console-actions", normalize: false, detail: { hide: true } })
    .post(
      "/console/events/:id/replay",
      act(async (v, event, form) => {
        const endpoint = form.get("endpoint") || undefined;
        if (endpoint !== undefined && !NAME.test(endpoint))
          throw new AppError("not_found", `endpoint ${event.tenant}/${endpoint} not found`);
        await kit.deps.dispatch!.replay(event.envelope.id, { endpoint, actor: v.principal.name });
      }, eventById),
      { parse: "none" },
    )
    .post(
      "/console/deliveries/:id/retry",
      act(async (v, _event, _form, id) => {
        await kit.deps.dispatch!.retry(await delivery(id), v.principal.name);
      }, eventOfDelivery),
      { parse: "none" },
    )
    .post(
      "/console/deliveries/:id/discard",
      act(async (v, _event, _form, id) => {
        await kit.deps.dispatch!.discard(await delivery(id), v.principal.name);
      }, eventOfDelivery),
      { parse: "none" },
    );
}
