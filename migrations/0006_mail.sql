CREATE TABLE `mail_messages` (
	`id` text PRIMARY KEY NOT NULL,
	`received_at` integer NOT NULL,
	`remote_ip` text NOT NULL,
	`helo` text NOT NULL,
	`mail_from` text NOT NULL,
	`recipients` text NOT NULL,
	`tls` integer NOT NULL,
	`size` integer NOT NULL,
	`spool_segment` text NOT NULL,
	`spool_offset` integer NOT NULL,
	`spool_length` integer NOT NULL,
	`trace` text NOT NULL,
	`state` text NOT NULL,
	`events` text,
	`error` text,
	`processed_at` integer
);
--> statement-breakpoint
CREATE INDEX `mail_messages_received` ON `mail_messages` (`received_at`);