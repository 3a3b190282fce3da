/**
 * Headers on every console response (docs/console.md#security-headers): scripts, styles and
 * connections from this origin only (no inline script or style anywhere), no framing by others,
 * no MIME sniffing, no Referer leaving the console.
 */
export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; frame-src 'self'";

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** A page or redirect: never cached (it shows one user's view). */
export function pageResponse(body: string | null, status: number, extra: Record<string, string> = {}): Response {
  const headers = new Headers({ ...SECURITY_HEADERS, "cache-control": "no-store" });
  if (body !== null) headers.set("content-type", "text/html; charset=utf-8");
  for (const [k, v] of Object.entries(extra)) headers.append(k, v);
  return new Response(body, { status, headers });
}

/** A redirect; `cookies` are Set-Cookie values. */
export function redirect(location: string, status: 302 | 303, cookies: readonly string[] = []): Response {
  const r = pageResponse(null, status, { location });
  for (const c of cookies) r.headers.append("set-cookie", c);
  return r;
}
