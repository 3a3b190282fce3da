import { timingSafeEqual } from "node:crypto";
import type { Principal } from "../api/auth.ts";

import type { ConsoleSession, ConsoleUser, SignInResult } from "../users/index.ts";
import { SESSION_COOKIE } from "../users/index.ts";

export type { ConsoleSession, ConsoleUser, SignInResult };
export { SESSION_COOKIE };

/**
 * What the console needs of its users (docs/console.md): the part of src/users' `Users` it
 * calls, so that its routes depend on no more.
 */
export interface ConsoleAuth {
  signIn(username: string, password: string, remote: string): Promise<SignInResult>;
  /** The live session for a cookie value, or null (unknown, expired, revoked). */
  session(token: string): Promise<ConsoleSession | null>;
  signOut(token: string, actor: string): Promise<void>;
  /** The user of a live session (by its id), without counting as activity (a live stream's check). */
  sessionUser(sessionId: string): Promise<ConsoleUser | null>;
  /** How many users exist: 0 opens the first-admin form. */
  count(): Promise<number>;
  /** The API's principal for a user: the console checks access with the API's rules. */
  principalOf(user: ConsoleUser): Principal;
  /**
   * Create the first admin with the bootstrap token as proof (compared in constant time), only
   * while no user exists. Refuses with AppError: forbidden (the token), conflict (a user exists by
   * then), invalid_input (an unusable username or password); the form shows the detail.
   */
  createFirstAdmin(bootstrapToken: string, username: string, password: string): Promise<ConsoleUser>;
}

/** The sign-in form's CSRF token before there is a session (double submit: cookie and form field). */
export const PRE_SESSION_COOKIE = "agentowl_presession";

export function cookiesOf(request: Request): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const at = part.indexOf("=");
    if (at <= 0) continue;
    const name = part.slice(0, at).trim();
    if (!out.has(name)) out.set(name, part.slice(at + 1).trim());
  }
  return out;
}

/** A cookie the page's scripts cannot read and no other site's request carries; Secure over TLS. */
export function setCookie(
  name: string,
  value: string,
  opts: { secure: boolean; path?: string; maxAgeS?: number },
): string {
  return [
    `${name}=${value}`,
    `Path=${opts.path ?? "/"}`,
    "HttpOnly",
    "SameSite=Strict",
    ...(opts.secure ? ["Secure"] : []),
    ...(opts.maxAgeS !== undefined ? [`Max-Age=${opts.maxAgeS}`] : []),
  ].join("; ");
}

export const overTls = (request: Request): boolean => new URL(request.url).protocol === "https:";

/** Equal strings, compared in time that does not depend on where they differ. */
export function sameSecret(a: string | null | undefined, b: string | null | undefined): boolean {
  if (!a || !b) return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const DEFAULT_NEXT = "/console";

/**
 * Where to go after signing in: a path on this origin only (`/console/events?x=1`), never
 * `//evil`, `/\evil`, `https://…` or anything with control characters; else the dashboard.
 */
export function safeNext(next: string | null | undefined): string {
  if (!next || next.length > 2048 || !next.startsWith("/") || /[\\\u0000-\u001f\u007f]/.test(next)) return DEFAULT_NEXT;
  if (next.startsWith("//")) return DEFAULT_NEXT;
  let url: URL;
  try {
    url = new URL(next, "http://console.invalid");
  } catch {
    return DEFAULT_NEXT;
  }
  if (url.origin !== "http://console.invalid") return DEFAULT_NEXT;
  if (!url.pathname.startsWith("/console") && !url.pathname.startsWith("/t/")) return DEFAULT_NEXT;
  return url.pathname + url.search;
}
