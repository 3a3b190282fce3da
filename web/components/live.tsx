/** @jsxImportSource hono/jsx */
import type { Child } from "hono/jsx";

/** Where a page with live parts opens its stream (docs/console.md#live-updates). */
export const LIVE_URL = "/console/live";
/** The stream's last message when the session ended: the page closes the stream instead of reconnecting. */
export const LIVE_ENDED = "ended";

/** The attributes of the element that holds a page's one live stream (the layout's <main>). */
export const liveSource = { "hx-ext": "sse", "sse-connect": LIVE_URL, "sse-close": LIVE_ENDED } as const;

/**
 * A part of a page that fetches its own URL again (with the page's filters in it) when the live
 * stream says one of `on` changed, and replaces itself with the answer: the server answers an
 * htmx request (`HX-Request: true`) with this part alone. Without `url` (an older page of a list,
 * which new rows do not change) it is a plain container.
 */
export function LiveRegion(props: { id: string; url: string | null; on: readonly string[]; children?: Child }) {
  if (!props.url) return <div id={props.id}>{props.children}</div>;
  return (
    <div id={props.id} hx-get={props.url} hx-trigger={props.on.map((t) => `sse:${t}`).join(", ")} hx-swap="outerHTML">
      {props.children}
    </div>
  );
}
