import type { JSX } from "hono/jsx/jsx-runtime";

/** A page as the HTML document a browser gets; hono/jsx escapes every text and attribute. */
export async function renderPage(page: JSX.Element): Promise<string> {
  return `<!doctype html>${await page.toString()}`;
}

/** A part of a page, alone (an htmx request's answer); escaped like a page. */
export async function renderFragment(part: JSX.Element): Promise<string> {
  return String(await part.toString());
}
