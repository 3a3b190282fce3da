import type { EndpointSpec } from "../control/resources/specs.ts";
import type { Breakers } from "./breaker.ts";
import type { EndpointSlots } from "./endpoint-slots.ts";

/** What an endpoint's circuit learns from an attempt that was made. */
export interface Attempted {
  ok: boolean;
  errorClass: string | null;
}

/**
 * A held place among an endpoint's deliveries in flight, with its circuit's permission. `release`
 * reports the attempt's outcome to the circuit (an egress refusal is not the endpoint's failure;
 * no attempt, e.g. a policy that said no: the probe slot is simply free again) and frees the place.
 */
export interface Place {
  release(attempted: Attempted | null): void;
}

/**
 * Where a delivery asks to go to its endpoint: a place in the endpoint's in-flight limit
 * (src/dispatch/endpoint-slots.ts), then its circuit breaker's say. "busy" or "open" when there is none.
 */
export class EndpointGate {
  constructor(
    private readonly slots: EndpointSlots,
    private readonly breakers: Breakers,
    private readonly defaultMaxInFlight: number,
  ) {}

  /** A place at once (the routing fast path): busy while anyone waits in the endpoint's line. */
  take(d: { tenant: string; endpoint: string }, endpoint: EndpointSpec): Place | "busy" | "open" {
    const k = key(d);
    if (!this.slots.tryAcquire(k, endpoint.max_in_flight ?? this.defaultMaxInFlight)) return "busy";
    return this.permit(k, endpoint.url);
  }

  /** A job's place: at once when one is free, else in the endpoint's line for up to `waitMs`. */
  async wait(
    d: { tenant: string; endpoint: string },
    endpoint: EndpointSpec,
    waitMs: number,
  ): Promise<Place | "busy" | "open"> {
    const k = key(d);
    if (!(await this.slots.acquire(k, endpoint.max_in_flight ?? this.defaultMaxInFlight, waitMs))) return "busy";
    return this.permit(k, endpoint.url);
  }

  /** The place is ours; the circuit still has its say (refused: the place goes on to the next in line). */
  private permit(k: string, url: string): Place | "open" {
    const breaker = this.breakers.for(k, url);
    if (!breaker.tryAcquire()) {
      this.slots.release(k);
      return "open";
    }
    return {
      release: (attempted) => {
        if (attempted?.ok) breaker.success();
        else if (attempted && attempted.errorClass !== "egress") breaker.failure();
        else breaker.release();
        this.slots.release(k);
      },
    };
  }
}

export const key = (d: { tenant: string; endpoint: string }) => `${d.tenant}/${d.endpoint}`;
