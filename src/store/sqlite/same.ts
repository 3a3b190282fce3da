/** True when two types are each assignable to the other: the driver's rows are the contract's. */
export type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

/** A compile-time check: `same<Same<A, B>>(true)` fails to type-check when A and B differ. */
export function same<T extends true>(_: T): void {}
