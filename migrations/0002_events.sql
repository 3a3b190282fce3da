CREATE TABLE `deliveries` (
	`id` text PRIMARY KEY NOT NULL,
	`event_id` text NOT NULL,
	`tenant` text NOT NULL,
	`endpoint` text NOT NULL,
	`state` text NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`last_status` integer,
	`last_error` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`event_id`) REFERENCES `events`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `deliveries_tenant` ON `deliveries` (`tenant`,`id`);--> statement-breakpoint
CREATE INDEX `deliveries_event` ON `deliveries` (`event_id`);--> statement-breakpoint
CREATE TABLE `events` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant` text NOT NULL,
	`type` text NOT NULL,
	`channel` text NOT NULL,
	`agent` text,
	`binding` text,
	`idempotency_key` text,
	`received_at` integer NOT NULL,
	`envelope` text NOT NULL,
	`trace` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `events_tenant` ON `events` (`tenant`,`id`);--> statement-breakpoint
CREATE INDEX `events_type` ON `events` (`type`,`id`);--> statement-breakpoint
CREATE UNIQUE INDEX `events_idempotency` ON `events` (`tenant`,`binding`,`idempotency_key`) WHERE idempotency_key IS NOT NULL;