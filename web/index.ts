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
export { type EventActions, EventPage, type EventView } from "./pages/event.tsx";
export { InboxList, type InboxListView, InboxPage } from "./pages/inbox.tsx";
export { renderFragment } from "./components/render.ts";
export { AgentsPage, type AgentsView, type RuntimeItem } from "./pages/agents.tsx";
export { ApprovalsPage, type ApprovalItem, type ApprovalsView } from "./pages/approvals.tsx";
export { TokenCreatedPage, TokensPage, type TokenItem, type TokensView } from "./pages/tokens.tsx";
export { VaultPage, type SecretItem, type VaultView } from "./pages/vault.tsx";
export { AuditPage, type AuditItem, type AuditView } from "./pages/audit.tsx";
export { LogLine, LogsPage, type LogsView } from "./pages/logs.tsx";
export { MessagePage, type MessageView } from "./pages/message.tsx";
export {
  ConfigKindPage,
  ConfigTenantPage,
  ConfigTenantsPage,
  type ConfigRow,
  type ConfigSection,
} from "./pages/config.tsx";
export {
  ConfigDeletePage,
  ConfigFormPage,
  ConfigNoticePage,
  type ConfigFormView,
  type DiffRow,
} from "./pages/config-form.tsx";
export { PolicyHistoryPage, PolicyTestPage, type PolicyTestView } from "./pages/config-policy.tsx";
