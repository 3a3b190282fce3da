import htmx from "htmx.org/dist/htmx.min.js" with { type: "text" };
import sse from "htmx-ext-sse/dist/sse.min.js" with { type: "text" };
import css from "../../web/assets/console.css" with { type: "text" };

/**
 * The console's static files, embedded in the binary as text (docs/console.md#assets). Each is
 * served under a name that carries a hash of its content, so a browser may keep it for a year:
 * a new build with a changed file links a new name.
 */
export interface Asset {
  /** The URL path: /console/assets/<name>-<hash>.<ext>. */
  path: string;
  body: string;
  type: string;
}

function asset(name: string, ext: "js" | "css", body: string): Asset {
  const hash = new Bun.CryptoHasher("sha256").update(body).digest("hex").slice(0, 12);
  const type = ext === "js" ? "text/javascript; charset=utf-8" : "text/css; charset=utf-8";
  return { path: `/console/assets/${name}-${hash}.${ext}`, body, type };
}

export const ASSETS = {
  htmx: asset("htmx", "js", htmx),
  sse: asset("htmx-sse", "js", sse),
  css: asset("console", "css", css),
} as const;

export const ASSET_BY_PATH: ReadonlyMap<string, Asset> = new Map(Object.values(ASSETS).map((a) => [a.path, a]));

/** What the layout links. */
export const ASSET_PATHS = { htmx: ASSETS.htmx.path, sse: ASSETS.sse.path, css: ASSETS.css.path };
