CREATE TABLE "dlq_entries" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"domain" text NOT NULL,
	"stream" text NOT NULL,
	"stream_sequence" bigint NOT NULL,
	"subject" text NOT NULL,
	"event_id" uuid,
	"event_type" text,
	"correlation_id" text,
	"envelope" jsonb,
	"raw_payload" text NOT NULL,
	"error" text NOT NULL,
	"error_kind" text NOT NULL,
	"deliveries" integer NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"replay_count" integer DEFAULT 0 NOT NULL,
	"replayed_at" timestamp (3) with time zone,
	CONSTRAINT "dlq_entries_stream_seq_uq" UNIQUE("stream","stream_sequence")
);
--> statement-breakpoint
CREATE INDEX "dlq_entries_keyset_idx" ON "dlq_entries" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "dlq_entries_correlation_idx" ON "dlq_entries" USING btree ("correlation_id");