export { type IsolationInfo, detectIsolation, detectIsolationAsync } from "./isolation.ts";
export { defaultRuntimeProgram, KILL_GRACE_MS, type LaunchOptions, launchRuntime } from "./launch.ts";
export { SANDBOX_SOCKET, SANDBOX_WORK } from "./bwrap.ts";
