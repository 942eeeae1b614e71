CREATE TABLE "webhook_endpoints" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"product_id" uuid,
	"tenant_instance_id" uuid,
	"url" text NOT NULL,
	"secret_encrypted" text NOT NULL,
	"encryption_key_id" text NOT NULL,
	"active" boolean DEFAULT true NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "webhook_endpoints_one_target" CHECK (("webhook_endpoints"."product_id" IS NULL) <> ("webhook_endpoints"."tenant_instance_id" IS NULL))
);
--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ADD CONSTRAINT "webhook_endpoints_product_id_products_id_fk" FOREIGN KEY ("product_id") REFERENCES "public"."products"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ADD CONSTRAINT "webhook_endpoints_tenant_instance_id_tenant_instances_id_fk" FOREIGN KEY ("tenant_instance_id") REFERENCES "public"."tenant_instances"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "webhook_endpoints_product_idx" ON "webhook_endpoints" USING btree ("product_id");--> statement-breakpoint
CREATE INDEX "webhook_endpoints_instance_idx" ON "webhook_endpoints" USING btree ("tenant_instance_id");--> statement-breakpoint
CREATE INDEX "webhook_endpoints_keyset_idx" ON "webhook_endpoints" USING btree ("created_at","id");