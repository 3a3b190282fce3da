DROP INDEX `deliveries_event_endpoint`;--> statement-breakpoint
ALTER TABLE `deliveries` ADD `replay_of` text;--> statement-breakpoint
ALTER TABLE `deliveries` ADD `requested_by` text;--> statement-breakpoint
ALTER TABLE `deliveries` ADD `attempt_base` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `deliveries` ADD `trace` text DEFAULT '[]' NOT NULL;--> statement-breakpoint
CREATE INDEX `deliveries_state` ON `deliveries` (`state`,`id`);--> statement-breakpoint
CREATE UNIQUE INDEX `deliveries_event_endpoint` ON `deliveries` (`event_id`,`endpoint`) WHERE replay_of IS NULL;