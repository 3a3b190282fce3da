import { RATE_BUCKETS_MAX, type RateQuery } from "./contract.ts";

/** How many buckets a rates query has; a RangeError when it asks for too many or for none. */
export function rateBuckets(q: RateQuery): number {
  if (!(q.bucketMs >= 1) || !(q.until > q.since) || !Number.isFinite(q.since) || !Number.isFinite(q.until))
    throw new RangeError("rates: since < until and a bucket of at least 1 ms");
  const n = Math.ceil((Math.floor(q.until) - Math.floor(q.since)) / Math.floor(q.bucketMs));
  if (n > RATE_BUCKETS_MAX) throw new RangeError(`rates: at most ${RATE_BUCKETS_MAX} buckets (asked for ${n})`);
  return n;
}
