/** @jsxImportSource hono/jsx */
import type { Child } from "hono/jsx";
import { liveSource } from "./live.tsx";

/** What every page's frame shows: the appliance, the signed-in user, the linked assets. */
export interface Chrome {
  /** The appliance's name in the header (its mail domain). */
  appliance: string;
  assets: { css: string; htmx: string; sse: string };
  user?: { username: string; role: "admin" | "member" } | null;
  /** The session's CSRF token: sent by htmx on every request (hx-headers) and by each form (_csrf). */
  csrf?: string | null;
  /** Which nav entry is the current page. */
  current?:
    | "dashboard"
    | "events"
    | "inbox"
    | "config"
    | "approvals"
    | "agents"
    | "vault"
    | "audit"
    | "tokens"
    | "logs"
    | null;
}

/** htmx must not inject its indicator <style> (the CSP allows no inline style) nor evaluate strings. */
const HTMX_CONFIG = JSON.stringify({ includeIndicatorStyles: false, allowEval: false });

const NAV = [
  { key: "dashboard", href: "/console", label: "Dashboard" },
  { key: "events", href: "/console/events", label: "Events" },
  { key: "config", href: "/console/config", label: "Configuration" },
  { key: "approvals", href: "/console/approvals", label: "Approvals" },
  { key: "agents", href: "/console/agents", label: "Agents" },
  { key: "vault", href: "/console/vault", label: "Vault" },
  { key: "audit", href: "/console/audit", label: "Audit" },
  { key: "tokens", href: "/console/tokens", label: "Tokens", admin: true },
  { key: "logs", href: "/console/logs", label: "Logs", admin: true },
] as const satisfies readonly { key: string; href: string; label: string; admin?: boolean }[];

/** `live`: the page has live parts (web/components/live.tsx), so it opens the live stream. */
export function Layout(props: { chrome: Chrome; title: string; live?: boolean; children?: Child }) {
  const { chrome } = props;
  const user = chrome.user ?? null;
  const headers = chrome.csrf ? JSON.stringify({ "X-CSRF-Token": chrome.csrf }) : undefined;
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="htmx-config" content={HTMX_CONFIG} />
        <title>{`${props.title} · ${chrome.appliance}`}</title>
        {/* No icon: without this line every page load asks for /favicon.ico, a 404 in the console. */}
        <link rel="icon" href="data:," />
        <link rel="stylesheet" href={chrome.assets.css} />
        <script src={chrome.assets.htmx} defer />
        <script src={chrome.assets.sse} defer />
      </head>
      <body hx-headers={headers}>
        <a class="skip-link" href="#main">
          Skip to content
        </a>
        <header class="top">
          <a class="brand" href="/console">
            {chrome.appliance}
          </a>
          {user ? (
            <nav aria-label="Main">
              <ul>
                {NAV.filter((n) => !("admin" in n) || user.role === "admin").map((n) => (
                  <li>
                    <a href={n.href} aria-current={chrome.current === n.key ? "page" : undefined}>
                      {n.label}
                    </a>
                  </li>
                ))}
              </ul>
            </nav>
          ) : null}
          {user ? (
            <div class="who">
              <span>
                Signed in as <strong>{user.username}</strong> ({user.role})
              </span>
              <form class="inline" method="post" action="/console/sign-out">
                <input type="hidden" name="_csrf" value={chrome.csrf ?? ""} />
                <button type="submit" class="link">
                  Sign out
                </button>
              </form>
            </div>
          ) : null}
        </header>
        <main id="main" tabindex={-1} {...(props.live && user ? liveSource : {})}>
          <h1>{props.title}</h1>
          {props.children}
        </main>
      </body>
    </html>
  );
}

/** A form's one message: an error (role=alert) or a note. */
export function Message(props: { text: string | null | undefined; kind?: "error" | "info" }) {
  if (!props.text) return null;
  const kind = props.kind ?? "error";
  return (
    <p class={kind === "error" ? "message" : "message info"} role={kind === "error" ? "alert" : "status"}>
      {props.text}
    </p>
  );
}

/** The hidden CSRF field every state-changing form carries. */
export const CsrfField = (props: { token: string }) => <input type="hidden" name="_csrf" value={props.token} />;
