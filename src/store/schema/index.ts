export * from "./approvals.ts";
export * from "./audit.ts";
export * from "./control.ts";
export * from "./events.ts";
export * from "./queue.ts";
export * from "./vault.ts";
export * from "./mail.ts";
export * from "./users.ts";
