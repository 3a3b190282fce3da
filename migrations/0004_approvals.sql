CREATE TABLE `approvals` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant` text NOT NULL,
	`event_id` text,
	`action` text NOT NULL,
	`policy` text NOT NULL,
	`state` text NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`on_expiry` text NOT NULL,
	`decided_by` text,
	`decided_at` integer,
	`reason` text
);
--> statement-breakpoint
CREATE INDEX `approvals_tenant` ON `approvals` (`tenant`,`id`);--> statement-breakpoint
CREATE INDEX `approvals_pending` ON `approvals` (`expires_at`);