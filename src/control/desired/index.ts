export { yamlBoundsProblem } from "./bounds.ts";
export { formatProblem, type LocatedProblem, MAX_ALIAS_COUNT, parseDesired } from "./parse.ts";
export { APPLY_ORDER, type Change, diffFields, type FieldChange, type Op, plan } from "./plan.ts";
export { renderDesired, renderPlan, type Summary, summarize } from "./render.ts";
export { API_VERSION, DesiredFile, type DesiredState, type Snapshot, TenantDocument } from "./schema.ts";
export { DESIRED_PARSE_QUEUE, DESIRED_PARSE_TIMEOUT_MS, DesiredParser, type ParseResult } from "./parse-off-thread.ts";
export type { LocatedRef } from "./parse.ts";
