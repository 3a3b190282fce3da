export * from "./control.ts";
export * from "./events.ts";
export * from "./queue.ts";
