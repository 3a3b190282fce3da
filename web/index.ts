/** The console's pages (docs/console.md): src/console renders them; every page takes plain view data. */
export { renderPage } from "./components/render.ts";
export type { Chrome } from "./components/layout.tsx";
export type { EventRow } from "./components/events-table.tsx";
export type { TimelineSpan } from "./components/timeline.tsx";
export { SignInPage } from "./pages/sign-in.tsx";
export { FirstAdminPage } from "./pages/first-admin.tsx";
export { ErrorPage } from "./pages/error.tsx";
export { DashboardLive, DashboardPage, type DashboardView } from "./pages/dashboard.tsx";
export { EventsList, type EventsListView, EventsPage, type EventsView } from "./pages/events.tsx";
export { EventPage, type EventView } from "./pages/event.tsx";
export { InboxList, type InboxListView, InboxPage } from "./pages/inbox.tsx";
export { renderFragment } from "./components/render.ts";
