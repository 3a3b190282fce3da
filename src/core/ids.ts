import { monotonicFactory } from "ulid";

/**
 * Prefixed, sortable identifiers (`evt_01JD…`): the prefix says what the id names, the ULID
 * sorts by creation time and is monotonic within one process, so ids created in the same
 * millisecond still sort in creation order.
 */
export const ID_PREFIXES = ["evt", "job", "obx", "req", "tsk", "dlv", "tok", "apr", "aud", "sec", "rt"] as const;
export type IdPrefix = (typeof ID_PREFIXES)[number];

const ulid = monotonicFactory();

export function newId<P extends IdPrefix>(prefix: P, now: number = Date.now()): `${P}_${string}` {
  return `${prefix}_${ulid(now)}`;
}

const ID_PATTERN = /^([a-z]{2,3})_([0-9A-HJKMNP-TV-Z]{26})$/;

/** True when `value` is a well-formed id with the given prefix. */
export function isId(value: string, prefix: IdPrefix): boolean {
  const m = ID_PATTERN.exec(value);
  return m !== null && m[1] === prefix;
}
