CREATE INDEX "customers_keyset_idx" ON "customers" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "features_keyset_idx" ON "features" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "modules_keyset_idx" ON "modules" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "plans_keyset_idx" ON "plans" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "products_keyset_idx" ON "products" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "subscriptions_keyset_idx" ON "subscriptions" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "tenant_instances_keyset_idx" ON "tenant_instances" USING btree ("created_at","id");