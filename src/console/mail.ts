import { Elysia } from "elysia";
import { MessagePage } from "../../web/index.ts";
import { canAccess } from "../api/auth.ts";
import { isId } from "../core/ids.ts";
import type { StoredEvent } from "../store/index.ts";
import { redirect } from "./headers.ts";
import { type ConsoleKit, NAME, type Visitor, type WithServer } from "./kit.ts";
import { eventView } from "./views.ts";

/**
 * A tenant's mail as its readers see it (docs/console.md#the-inbox): the message page, its HTML
 * part in a sandboxed frame, its attachments as downloads, and the inbox by the tenant's mail host
 * (`/inbound/email`). Readers are the tenant's members and admins, or anyone when the tenant's
 * `inbox.public` is on (read-only: nothing here changes state).
 */

/**
 * The sanitized HTML's own policy: no script, no connection, no form, inline styles only (mail
 * is styled inline), images from the document itself only, and a sandbox even when opened
 * outside its frame. Remote images only when the reader asked for them.
 */
export const MESSAGE_HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data: cid:; sandbox";
export const MESSAGE_HTML_CSP_IMAGES =
  "default-src 'none'; style-src 'unsafe-inline'; img-src data: cid: https: http:; sandbox";
/** A download is never rendered by the browser as a page of this origin. */
export const ATTACHMENT_CSP = "default-src 'none'; sandbox";

/** Inline images (`cid:`) of these types become data: URLs in the frame's document, up to these sizes. */
const INLINE_IMAGE_TYPE = /^image\/(png|gif|jpeg|webp)$/;
const INLINE_IMAGE_MAX = 2 * 1024 * 1024;
const INLINE_IMAGES_MAX = 8 * 1024 * 1024;

type TenantParams = { tenant: string };
type MessageParams = TenantParams & { eventId: string };

interface Attachment {
  filename: unknown;
  content_type: unknown;
  size: unknown;
  sha256: unknown;
  content_id: unknown;
}

const dataOf = (e: StoredEvent) => (e.envelope.data ?? {}) as Record<string, unknown>;
const attachmentsOf = (e: StoredEvent): Attachment[] => {
  const list = dataOf(e).attachments;
  return Array.isArray(list) ? list.map((a) => (a && typeof a === "object" ? a : {}) as Attachment) : [];
};
const isPublic = (spec: unknown) => (spec as { inbox?: { public?: unknown } } | null)?.inbox?.public === true;

/**
 * `Content-Disposition` for a name from outside (RFC 6266, RFC 5987): an ASCII fallback of safe
 * characters only and the exact name percent-encoded, so no quote, semicolon, CR or LF of the
 * name ever reaches the header's syntax.
 */
export function contentDisposition(name: string): string {
  const clean = name
    .toWellFormed()
    .replace(/[\u0000-\u001f\u007f/\\]/g, "_")
    .trim()
    .slice(0, 200);
  const exact = clean || "attachment";
  const fallback = exact.replace(/[^A-Za-z0-9._-]/g, "_");
  const encoded = encodeURIComponent(exact).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

/** Sanitized HTML (src/mail/sanitize.ts) keeps a remote image's address in data-remote-src. */
const REMOTE_IMAGE = /<img\b[^>]*\sdata-remote-src="/i;
const withRemoteImages = (html: string) =>
  html.replace(/<img\b[^>]*>/gi, (tag) => (/\ssrc="/.test(tag) ? tag : tag.replace(/\sdata-remote-src="/, ' src="')));

const unescapeAttribute = (v: string) =>
  v
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");

/**
 * The access rule of every inbox page: the tenant's members and admins, or anyone when the
 * tenant's inbox is public. Without a session and without a public inbox, the sign-in form
 * (which comes back); a signed-in user who may not read it, or an unknown tenant: 404.
 */
export function inboxAccess(kit: ConsoleKit) {
  const { storage, visitor, guarded, notFound } = kit;
  return <C extends { request: Request; params: TenantParams }>(
    handler: (v: Visitor | null, c: C) => Promise<Response>,
  ) =>
    guarded<C>(async (c) => {
      const tenant = c.params.tenant;
      const v = await visitor(c.request);
      if (NAME.test(tenant)) {
        const record = await storage.resources.get({ tenant, kind: "tenants", name: tenant });
        if (record && ((v && canAccess(v.principal, tenant, "read")) || isPublic(record.spec))) return handler(v, c);
      }
      if (v) return notFound(v);
      const url = new URL(c.request.url);
      return redirect(`/console/sign-in?next=${encodeURIComponent(url.pathname + url.search)}`, 303);
    });
}

export function mailRoutes(kit: ConsoleKit) {
  const { storage, html, notFound, chromeFor, guarded, visitor } = kit;
  const reader = inboxAccess(kit);

  /** The tenant's mail event of that id, or null (another tenant's, not mail, unknown). */
  async function emailEvent(tenant: string, id: string): Promise<StoredEvent | null> {
    if (!isId(id, "evt")) return null;
    const event = await storage.events.get(id);
    return event && event.tenant === tenant && event.envelope.channel === "email" ? event : null;
  }

  /** `cid:` images of the message's own attachments (raster types only) as data: URLs; the rest stay blocked. */
  async function inlineImages(body: string, attachments: Attachment[]): Promise<string> {
    const byCid = new Map<string, Attachment>();
    for (const a of attachments)
      if (
        typeof a.content_id === "string" &&
        typeof a.sha256 === "string" &&
        INLINE_IMAGE_TYPE.test(String(a.content_type).toLowerCase()) &&
        Number(a.size) <= INLINE_IMAGE_MAX
      )
        byCid.set(a.content_id, a);
    if (!byCid.size) return body;
    const urls = new Map<string, string>();
    let budget = INLINE_IMAGES_MAX;
    for (const [, raw] of body.matchAll(/<img\b[^>]*\ssrc="cid:([^"]*)"/gi)) {
      const cid = unescapeAttribute(raw!);
      if (urls.has(cid)) continue;
      let decoded = cid;
      try {
        decoded = decodeURIComponent(cid);
      } catch {}
      const a = byCid.get(cid) ?? byCid.get(decoded);
      if (!a || Number(a.size) > budget) continue;
      const bytes = await storage.blobs.get(a.sha256 as string).catch(() => null);
      if (!bytes) continue;
      budget -= bytes.length;
      urls.set(cid, `data:${String(a.content_type).toLowerCase()};base64,${Buffer.from(bytes).toString("base64")}`);
    }
    if (!urls.size) return body;
    return body.replace(/(<img\b[^>]*\ssrc=")cid:([^"]*)"/gi, (whole, head: string, raw: string) => {
      const url = urls.get(unescapeAttribute(raw));
      return url ? `${head}${url}"` : whole;
    });
  }

  const base = (tenant: string, id: string) => `/t/${tenant}/inbox/${id}`;

  return (
    new Elysia({ name: "console-mail", normalize: false, detail: { hide: true } })
      .get(
        "/t/:tenant/inbox/:eventId",
        reader(async (v, { params }: { request: Request; params: MessageParams }) => {
          const event = await emailEvent(params.tenant, params.eventId);
          if (!event) return notFound(v);
          const rows = await storage.events.deliveries({ eventId: event.envelope.id, limit: 100 });
          const ev = eventView(
            event,
            rows.map((row) => ({ row, attempts: [] })),
          );
          const data = dataOf(event);
          const href = base(params.tenant, event.envelope.id);
          const body = typeof data.html === "string" ? data.html : null;
          return html(
            MessagePage({
              chrome: chromeFor(v, "inbox"),
              view: {
                id: ev.id,
                tenant: ev.tenant,
                receivedAt: ev.receivedAt,
                from: ev.email?.from ?? "",
                to: ev.email?.to ?? "",
                cc: ev.email?.cc ?? "",
                subject: ev.email?.subject ?? "",
                date: ev.email?.date ?? "",
                auth: ev.auth ?? [],
                text: ev.email?.text ?? "",
                html:
                  body === null
                    ? null
                    : { src: `${href}/html`, withImages: REMOTE_IMAGE.test(body) ? `${href}/html?images=1` : null },
                attachments: (ev.email?.attachments ?? []).map((a, n) => ({ ...a, href: `${href}/attachments/${n}` })),
                deliveries: ev.deliveries.map((d) => ({ endpoint: d.endpoint, state: d.state })),
                eventHref: v && canAccess(v.principal, ev.tenant, "read") ? `/console/events/${ev.id}` : null,
                inboxHref: `/t/${ev.tenant}/inbox`,
              },
            }),
          );
        }),
      )
      .get(
        "/t/:tenant/inbox/:eventId/html",
        reader(async (v, { request, params }: { request: Request; params: MessageParams }) => {
          const event = await emailEvent(params.tenant, params.eventId);
          const stored = event ? dataOf(event).html : null;
          if (!event || typeof stored !== "string") return notFound(v);
          const images = new URL(request.url).searchParams.get("images") === "1";
          const body = await inlineImages(images ? withRemoteImages(stored) : stored, attachmentsOf(event));
          return new Response(
            `<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"></head><body>${body}</body></html>`,
            {
              headers: {
                "content-type": "text/html; charset=utf-8",
                "content-security-policy": images ? MESSAGE_HTML_CSP_IMAGES : MESSAGE_HTML_CSP,
                "x-content-type-options": "nosniff",
                "referrer-policy": "no-referrer",
                "cache-control": "no-store",
              },
            },
          );
        }),
      )
      .get(
        "/t/:tenant/inbox/:eventId/attachments/:n",
        reader(async (v, { params }: { request: Request; params: MessageParams & { n: string } }) => {
          const event = await emailEvent(params.tenant, params.eventId);
          if (!event || !/^\d{1,4}$/.test(params.n)) return notFound(v);
          const a = attachmentsOf(event)[Number(params.n)];
          const sha256 = a?.sha256;
          if (!a || typeof sha256 !== "string" || !/^[0-9a-f]{64}$/.test(sha256)) return notFound(v);
          // A blob the retention sweep removed: gone, like an unknown one.
          const bytes = await storage.blobs.get(sha256);
          if (!bytes) return notFound(v);
          return new Response(bytes, {
            headers: {
              "content-type": "application/octet-stream",
              "content-disposition": contentDisposition(typeof a.filename === "string" ? a.filename : ""),
              "content-security-policy": ATTACHMENT_CSP,
              "x-content-type-options": "nosniff",
              "referrer-policy": "no-referrer",
              "cache-control": "no-store",
            },
          });
        }),
      )
      // The seed's hosted inbox: the inbox of the tenant whose mail host this request names.
      .get(
        "/inbound/email",
        guarded(async ({ request, server }: WithServer) => {
          const host = (request.headers.get("host") ?? "").toLowerCase().replace(/:\d+$/, "").replace(/\.$/, "");
          const suffix = `.${kit.deps.appliance.toLowerCase()}`;
          const tenant = host.endsWith(suffix) ? host.slice(0, -suffix.length) : "";
          const known =
            NAME.test(tenant) && (await storage.resources.get({ tenant, kind: "tenants", name: tenant })) !== null;
          if (!known) return notFound(await visitor(request));
          const url = new URL(request.url);
          const path = `/t/${tenant}/inbox${url.search}`;
          // The inbox's own route answers, with its access rule; without a server (a test's
          // app.handle) the reader is sent there.
          if (!server || typeof (server as { fetch?: unknown }).fetch !== "function") return redirect(path, 303);
          return (server as unknown as { fetch(r: Request): Promise<Response> }).fetch(
            new Request(new URL(path, url).href, { headers: request.headers }),
          );
        }),
      )
  );
}
