-- Fewer index writes per delivery (docs/performance.md#dispatch): the event's index and the unique
-- first delivery per (event, endpoint) become one unique index that holds every delivery (a replay
-- keyed by its own id); only deliveries with an approval are in deliveries_approval, and only
-- delivered and dead ones (what the dashboard's rates count) in deliveries_state_updated.
DROP INDEX `deliveries_event`;--> statement-breakpoint
DROP INDEX `deliveries_event_endpoint`;--> statement-breakpoint
DROP INDEX `deliveries_approval`;--> statement-breakpoint
DROP INDEX `deliveries_state_updated`;--> statement-breakpoint
CREATE UNIQUE INDEX `deliveries_event_endpoint` ON `deliveries` (`event_id`,`endpoint`,(CASE WHEN "replay_of" IS NULL THEN '' ELSE "id" END));--> statement-breakpoint
CREATE INDEX `deliveries_approval` ON `deliveries` (`approval_id`) WHERE approval_id IS NOT NULL;--> statement-breakpoint
CREATE INDEX `deliveries_state_updated` ON `deliveries` (`state`,`updated_at`,`tenant`) WHERE state IN ('delivered', 'dead');
