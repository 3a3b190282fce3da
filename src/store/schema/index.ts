export * from "./control.ts";
export * from "./queue.ts";
