import { createHash } from "node:crypto";
import { AppError } from "../../errors/index.ts";

/**
 * The idempotency key an ingress event is stored under, from the provider's delivery id (or the
 * request's Idempotency-Key). The events table is unique per tenant, binding and key, so the key
 * must stand for the whole id: two ids that share a prefix are two deliveries.
 *
 * A short id is stored as it is: readable in the API, and equal to the key stored for it before
 * (the ids of every common provider, UUIDs and `msg_…`, are far shorter), so a retransmission
 * across an upgrade is still a repeat. A longer one, and any id that itself starts with the
 * hash prefix (so no id can pose as another's hash), is stored as `sha256:` and the hex SHA-256
 * of all of its bytes. The envelope keeps the id itself in `source.delivery_id`.
 */

/** The longest delivery id taken, in UTF-8 bytes; a longer one is refused with 400. */
export const MAX_DELIVERY_ID_BYTES = 1024;
/** Ids up to this many characters are their own key. */
export const VERBATIM_KEY_CHARS = 200;
const HASHED = "sha256:";

/** The stored key for a delivery id; throws invalid_input (400) for an id over MAX_DELIVERY_ID_BYTES. */
export function idempotencyKey(deliveryId: string): string {
  if (Buffer.byteLength(deliveryId) > MAX_DELIVERY_ID_BYTES) {
    throw new AppError(
      "invalid_input",
      `the delivery id (or Idempotency-Key) may have at most ${MAX_DELIVERY_ID_BYTES} bytes`,
    );
  }
  if (deliveryId.length <= VERBATIM_KEY_CHARS && !deliveryId.startsWith(HASHED)) return deliveryId;
  return HASHED + createHash("sha256").update(deliveryId).digest("hex");
}
