CREATE TYPE "public"."client_kind" AS ENUM('admin', 'tenant');--> statement-breakpoint
CREATE TYPE "public"."database_tier" AS ENUM('standard', 'enterprise');--> statement-breakpoint
CREATE TYPE "public"."instance_status" AS ENUM('provisioning', 'active', 'failed', 'suspended', 'decommissioned');--> statement-breakpoint
CREATE TYPE "public"."override_type" AS ENUM('enable', 'disable');--> statement-breakpoint
CREATE TYPE "public"."plan_tier" AS ENUM('standard', 'professional', 'enterprise');--> statement-breakpoint
CREATE TYPE "public"."step_status" AS ENUM('running', 'succeeded', 'failed');--> statement-breakpoint
CREATE TYPE "public"."subscription_status" AS ENUM('pending', 'active', 'suspended', 'cancelled');--> statement-breakpoint
CREATE TYPE "public"."task_kind" AS ENUM('provision', 'deprovision', 'update_features');--> statement-breakpoint
CREATE TYPE "public"."task_status" AS ENUM('queued', 'running', 'succeeded', 'failed', 'dead_lettered');--> statement-breakpoint
CREATE TABLE "api_clients" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"client_id" text NOT NULL,
	"secret_hash" text NOT NULL,
	"name" text NOT NULL,
	"kind" "client_kind" NOT NULL,
	"customer_id" uuid,
	"instance_ids" uuid[] DEFAULT '{}'::uuid[] NOT NULL,
	"roles" text[] DEFAULT '{}'::text[] NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp (3) with time zone,
	CONSTRAINT "api_clients_client_id_unique" UNIQUE("client_id"),
	CONSTRAINT "api_clients_tenant_has_customer" CHECK ("api_clients"."kind" = 'admin' OR "api_clients"."customer_id" IS NOT NULL)
);
--> statement-breakpoint
CREATE TABLE "audit_log" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"occurred_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"entity_type" text NOT NULL,
	"entity_id" text NOT NULL,
	"before" jsonb,
	"after" jsonb,
	"correlation_id" text
);
--> statement-breakpoint
CREATE TABLE "customers" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"legal_name" text NOT NULL,
	"tax_id" text NOT NULL,
	"billing_email" text NOT NULL,
	"country" text NOT NULL,
	"is_active" boolean DEFAULT true NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"deleted_at" timestamp (3) with time zone,
	CONSTRAINT "customers_country_tax_id_uq" UNIQUE("country","tax_id"),
	CONSTRAINT "customers_country_format" CHECK ("customers"."country" ~ '^[A-Z]{2}$')
);
--> statement-breakpoint
CREATE TABLE "features" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"module_id" uuid NOT NULL,
	"product_id" uuid NOT NULL,
	"code" text NOT NULL,
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"is_premium" boolean DEFAULT false NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "features_product_code_uq" UNIQUE("product_id","code"),
	CONSTRAINT "features_code_format" CHECK ("features"."code" ~ '^[A-Z][A-Z0-9_]{1,63}$')
);
--> statement-breakpoint
CREATE TABLE "modules" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"product_id" uuid NOT NULL,
	"code" text NOT NULL,
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "modules_product_code_uq" UNIQUE("product_id","code"),
	CONSTRAINT "modules_id_product_uq" UNIQUE("id","product_id"),
	CONSTRAINT "modules_code_format" CHECK ("modules"."code" ~ '^[A-Z][A-Z0-9_]{1,63}$')
);
--> statement-breakpoint
CREATE TABLE "outbox_events" (
	"id" uuid PRIMARY KEY NOT NULL,
	"seq" bigserial NOT NULL,
	"subject" text NOT NULL,
	"type" text NOT NULL,
	"payload" jsonb NOT NULL,
	"correlation_id" text,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"published_at" timestamp (3) with time zone,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	CONSTRAINT "outbox_events_seq_unique" UNIQUE("seq")
);
--> statement-breakpoint
CREATE TABLE "plan_features" (
	"plan_id" uuid NOT NULL,
	"product_id" uuid NOT NULL,
	"feature_code" text NOT NULL,
	CONSTRAINT "plan_features_plan_id_feature_code_pk" PRIMARY KEY("plan_id","feature_code")
);
--> statement-breakpoint
CREATE TABLE "plan_limits" (
	"plan_id" uuid NOT NULL,
	"product_id" uuid NOT NULL,
	"limit_name" text NOT NULL,
	"value" bigint NOT NULL,
	CONSTRAINT "plan_limits_plan_id_limit_name_pk" PRIMARY KEY("plan_id","limit_name"),
	CONSTRAINT "plan_limits_value_nonnegative" CHECK ("plan_limits"."value" >= 0)
);
--> statement-breakpoint
CREATE TABLE "plans" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"product_id" uuid NOT NULL,
	"code" text NOT NULL,
	"name" text NOT NULL,
	"tier" "plan_tier" NOT NULL,
	"price" numeric(12, 2) NOT NULL,
	"currency" text DEFAULT 'USD' NOT NULL,
	"max_users" integer NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "plans_code_unique" UNIQUE("code"),
	CONSTRAINT "plans_id_product_uq" UNIQUE("id","product_id"),
	CONSTRAINT "plans_code_format" CHECK ("plans"."code" ~ '^[A-Z][A-Z0-9_]{1,63}$'),
	CONSTRAINT "plans_price_nonnegative" CHECK ("plans"."price" >= 0),
	CONSTRAINT "plans_max_users_positive" CHECK ("plans"."max_users" > 0),
	CONSTRAINT "plans_currency_format" CHECK ("plans"."currency" ~ '^[A-Z]{3}$')
);
--> statement-breakpoint
CREATE TABLE "processed_messages" (
	"consumer" text NOT NULL,
	"message_id" text NOT NULL,
	"processed_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "processed_messages_consumer_message_id_pk" PRIMARY KEY("consumer","message_id")
);
--> statement-breakpoint
CREATE TABLE "product_limits" (
	"product_id" uuid NOT NULL,
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "product_limits_product_id_name_pk" PRIMARY KEY("product_id","name"),
	CONSTRAINT "product_limits_name_format" CHECK ("product_limits"."name" ~ '^[a-z][a-z0-9_]{1,63}$')
);
--> statement-breakpoint
CREATE TABLE "products" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"code" text NOT NULL,
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"version" text DEFAULT '1.0.0' NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "products_code_unique" UNIQUE("code"),
	CONSTRAINT "products_code_format" CHECK ("products"."code" ~ '^[A-Z][A-Z0-9_]{1,63}$')
);
--> statement-breakpoint
CREATE TABLE "provisioning_task_steps" (
	"task_id" uuid NOT NULL,
	"name" text NOT NULL,
	"position" integer NOT NULL,
	"status" "step_status" NOT NULL,
	"attempts" integer DEFAULT 1 NOT NULL,
	"started_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp (3) with time zone,
	"error" text,
	CONSTRAINT "provisioning_task_steps_task_id_name_pk" PRIMARY KEY("task_id","name")
);
--> statement-breakpoint
CREATE TABLE "provisioning_tasks" (
	"id" uuid PRIMARY KEY NOT NULL,
	"tenant_instance_id" uuid NOT NULL,
	"kind" "task_kind" NOT NULL,
	"status" "task_status" DEFAULT 'queued' NOT NULL,
	"correlation_id" text NOT NULL,
	"request_hash" text NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"response" jsonb NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp (3) with time zone,
	"finished_at" timestamp (3) with time zone,
	CONSTRAINT "provisioning_tasks_correlation_uq" UNIQUE("correlation_id")
);
--> statement-breakpoint
CREATE TABLE "subscription_feature_overrides" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"subscription_id" uuid NOT NULL,
	"product_id" uuid NOT NULL,
	"feature_code" text,
	"override_type" "override_type",
	"limit_name" text,
	"value" bigint,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "overrides_subscription_feature_uq" UNIQUE("subscription_id","feature_code"),
	CONSTRAINT "overrides_subscription_limit_uq" UNIQUE("subscription_id","limit_name"),
	CONSTRAINT "overrides_shape" CHECK (("subscription_feature_overrides"."feature_code" IS NOT NULL AND "subscription_feature_overrides"."override_type" IS NOT NULL AND "subscription_feature_overrides"."limit_name" IS NULL AND "subscription_feature_overrides"."value" IS NULL)
        OR ("subscription_feature_overrides"."feature_code" IS NULL AND "subscription_feature_overrides"."override_type" IS NULL AND "subscription_feature_overrides"."limit_name" IS NOT NULL AND "subscription_feature_overrides"."value" IS NOT NULL AND "subscription_feature_overrides"."value" >= 0))
);
--> statement-breakpoint
CREATE TABLE "subscriptions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"customer_id" uuid NOT NULL,
	"tenant_instance_id" uuid NOT NULL,
	"plan_id" uuid NOT NULL,
	"product_id" uuid NOT NULL,
	"status" "subscription_status" DEFAULT 'pending' NOT NULL,
	"starts_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp (3) with time zone,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "subscriptions_instance_uq" UNIQUE("tenant_instance_id"),
	CONSTRAINT "subscriptions_id_product_uq" UNIQUE("id","product_id"),
	CONSTRAINT "subscriptions_expiry_after_start" CHECK ("subscriptions"."expires_at" IS NULL OR "subscriptions"."expires_at" > "subscriptions"."starts_at")
);
--> statement-breakpoint
CREATE TABLE "tenant_instances" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"customer_id" uuid NOT NULL,
	"product_id" uuid NOT NULL,
	"instance_code" text NOT NULL,
	"tenant_code" text NOT NULL,
	"environment" text DEFAULT 'production' NOT NULL,
	"database_tier" "database_tier" NOT NULL,
	"connection_string_encrypted" text,
	"encryption_key_id" text,
	"status" "instance_status" DEFAULT 'provisioning' NOT NULL,
	"kubernetes_namespace" text NOT NULL,
	"subdomain_url" text NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "tenant_instances_tenant_code_unique" UNIQUE("tenant_code"),
	CONSTRAINT "tenant_instances_customer_code_uq" UNIQUE("customer_id","instance_code"),
	CONSTRAINT "tenant_instances_id_product_uq" UNIQUE("id","product_id"),
	CONSTRAINT "tenant_instances_id_customer_uq" UNIQUE("id","customer_id"),
	CONSTRAINT "tenant_instances_code_format" CHECK ("tenant_instances"."instance_code" ~ '^[a-z0-9][a-z0-9-]{0,39}$'),
	CONSTRAINT "tenant_instances_connection_tier" CHECK ("tenant_instances"."database_tier" = 'enterprise' OR "tenant_instances"."connection_string_encrypted" IS NULL)
);
--> statement-breakpoint
ALTER TABLE "api_clients" ADD CONSTRAINT "api_clients_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "features" ADD CONSTRAINT "features_module_product_fk" FOREIGN KEY ("module_id","product_id") REFERENCES "public"."modules"("id","product_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "modules" ADD CONSTRAINT "modules_product_id_products_id_fk" FOREIGN KEY ("product_id") REFERENCES "public"."products"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "plan_features" ADD CONSTRAINT "plan_features_plan_fk" FOREIGN KEY ("plan_id","product_id") REFERENCES "public"."plans"("id","product_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "plan_features" ADD CONSTRAINT "plan_features_feature_fk" FOREIGN KEY ("product_id","feature_code") REFERENCES "public"."features"("product_id","code") ON DELETE no action ON UPDATE cascade;--> statement-breakpoint
ALTER TABLE "plan_limits" ADD CONSTRAINT "plan_limits_plan_fk" FOREIGN KEY ("plan_id","product_id") REFERENCES "public"."plans"("id","product_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "plan_limits" ADD CONSTRAINT "plan_limits_limit_fk" FOREIGN KEY ("product_id","limit_name") REFERENCES "public"."product_limits"("product_id","name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "plans" ADD CONSTRAINT "plans_product_id_products_id_fk" FOREIGN KEY ("product_id") REFERENCES "public"."products"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "product_limits" ADD CONSTRAINT "product_limits_product_id_products_id_fk" FOREIGN KEY ("product_id") REFERENCES "public"."products"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "provisioning_task_steps" ADD CONSTRAINT "provisioning_task_steps_task_id_provisioning_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."provisioning_tasks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "provisioning_tasks" ADD CONSTRAINT "provisioning_tasks_tenant_instance_id_tenant_instances_id_fk" FOREIGN KEY ("tenant_instance_id") REFERENCES "public"."tenant_instances"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "subscription_feature_overrides" ADD CONSTRAINT "overrides_subscription_fk" FOREIGN KEY ("subscription_id","product_id") REFERENCES "public"."subscriptions"("id","product_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "subscription_feature_overrides" ADD CONSTRAINT "overrides_feature_fk" FOREIGN KEY ("product_id","feature_code") REFERENCES "public"."features"("product_id","code") ON DELETE no action ON UPDATE cascade;--> statement-breakpoint
ALTER TABLE "subscription_feature_overrides" ADD CONSTRAINT "overrides_limit_fk" FOREIGN KEY ("product_id","limit_name") REFERENCES "public"."product_limits"("product_id","name") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "subscriptions" ADD CONSTRAINT "subscriptions_instance_product_fk" FOREIGN KEY ("tenant_instance_id","product_id") REFERENCES "public"."tenant_instances"("id","product_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "subscriptions" ADD CONSTRAINT "subscriptions_instance_customer_fk" FOREIGN KEY ("tenant_instance_id","customer_id") REFERENCES "public"."tenant_instances"("id","customer_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "subscriptions" ADD CONSTRAINT "subscriptions_plan_product_fk" FOREIGN KEY ("plan_id","product_id") REFERENCES "public"."plans"("id","product_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tenant_instances" ADD CONSTRAINT "tenant_instances_customer_id_customers_id_fk" FOREIGN KEY ("customer_id") REFERENCES "public"."customers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tenant_instances" ADD CONSTRAINT "tenant_instances_product_id_products_id_fk" FOREIGN KEY ("product_id") REFERENCES "public"."products"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "audit_entity_idx" ON "audit_log" USING btree ("entity_type","entity_id");--> statement-breakpoint
CREATE INDEX "audit_actor_idx" ON "audit_log" USING btree ("actor");--> statement-breakpoint
CREATE INDEX "audit_occurred_idx" ON "audit_log" USING btree ("occurred_at");--> statement-breakpoint
CREATE INDEX "features_module_idx" ON "features" USING btree ("module_id");--> statement-breakpoint
CREATE INDEX "outbox_pending_idx" ON "outbox_events" USING btree ("seq") WHERE "outbox_events"."published_at" IS NULL;--> statement-breakpoint
CREATE INDEX "plans_product_idx" ON "plans" USING btree ("product_id");--> statement-breakpoint
CREATE INDEX "provisioning_tasks_instance_idx" ON "provisioning_tasks" USING btree ("tenant_instance_id");--> statement-breakpoint
CREATE INDEX "overrides_subscription_idx" ON "subscription_feature_overrides" USING btree ("subscription_id");--> statement-breakpoint
CREATE INDEX "subscriptions_customer_idx" ON "subscriptions" USING btree ("customer_id");--> statement-breakpoint
CREATE INDEX "subscriptions_plan_idx" ON "subscriptions" USING btree ("plan_id");--> statement-breakpoint
CREATE INDEX "tenant_instances_customer_idx" ON "tenant_instances" USING btree ("customer_id");--> statement-breakpoint
CREATE INDEX "tenant_instances_product_idx" ON "tenant_instances" USING btree ("product_id");