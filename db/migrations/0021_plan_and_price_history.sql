CREATE TABLE "plan_price_periods" (
	"plan_id" uuid NOT NULL,
	"price" numeric(12, 2) NOT NULL,
	"currency" text NOT NULL,
	"valid_from" timestamp (3) with time zone NOT NULL,
	"valid_until" timestamp (3) with time zone,
	CONSTRAINT "plan_price_periods_plan_id_valid_from_pk" PRIMARY KEY("plan_id","valid_from"),
	CONSTRAINT "plan_price_periods_order" CHECK ("plan_price_periods"."valid_until" IS NULL OR "plan_price_periods"."valid_until" > "plan_price_periods"."valid_from")
);
--> statement-breakpoint
CREATE TABLE "subscription_plan_periods" (
	"subscription_id" uuid NOT NULL,
	"plan_id" uuid NOT NULL,
	"valid_from" timestamp (3) with time zone NOT NULL,
	"valid_until" timestamp (3) with time zone,
	CONSTRAINT "subscription_plan_periods_subscription_id_valid_from_pk" PRIMARY KEY("subscription_id","valid_from"),
	CONSTRAINT "subscription_plan_periods_order" CHECK ("subscription_plan_periods"."valid_until" IS NULL OR "subscription_plan_periods"."valid_until" > "subscription_plan_periods"."valid_from")
);
--> statement-breakpoint
ALTER TABLE "plan_price_periods" ADD CONSTRAINT "plan_price_periods_plan_id_plans_id_fk" FOREIGN KEY ("plan_id") REFERENCES "public"."plans"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "subscription_plan_periods" ADD CONSTRAINT "subscription_plan_periods_subscription_id_subscriptions_id_fk" FOREIGN KEY ("subscription_id") REFERENCES "public"."subscriptions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "subscription_plan_periods" ADD CONSTRAINT "subscription_plan_periods_plan_id_plans_id_fk" FOREIGN KEY ("plan_id") REFERENCES "public"."plans"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "plan_price_periods_open_uq" ON "plan_price_periods" USING btree ("plan_id") WHERE "plan_price_periods"."valid_until" IS NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "subscription_plan_periods_open_uq" ON "subscription_plan_periods" USING btree ("subscription_id") WHERE "subscription_plan_periods"."valid_until" IS NULL;--> statement-breakpoint
CREATE INDEX "subscription_plan_periods_plan_idx" ON "subscription_plan_periods" USING btree ("plan_id");--> statement-breakpoint
-- Historial de planes y de precios: la facturación cobraba cada periodo con el plan y el precio de
-- hoy, así que un cambio hecho antes de facturar el mes anterior lo cobraba al precio nuevo. Lo
-- escriben triggers: ningún camino que cambie un plan o un precio (API, cargas) puede olvidarlo.
CREATE FUNCTION "track_plan_periods"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    -- Una fila creada lo tiene desde su creación (las cargas pueden fecharla antes).
    INSERT INTO "subscription_plan_periods" ("subscription_id", "plan_id", "valid_from")
      VALUES (NEW."id", NEW."plan_id", least(NEW."created_at", now()))
      ON CONFLICT DO NOTHING;
    RETURN NULL;
  END IF;
  IF OLD."plan_id" IS NOT DISTINCT FROM NEW."plan_id" THEN
    RETURN NULL;
  END IF;
  -- Un tramo que empezó en este mismo milisegundo (p. ej., en la misma transacción) no duró
  -- nada: se reemplaza. Se compara ya redondeado, como se guarda.
  DELETE FROM "subscription_plan_periods"
    WHERE "subscription_id" = NEW."id" AND "valid_until" IS NULL
      AND "valid_from" >= now()::timestamp (3) with time zone;
  UPDATE "subscription_plan_periods" SET "valid_until" = now()
    WHERE "subscription_id" = NEW."id" AND "valid_until" IS NULL;
  INSERT INTO "subscription_plan_periods" ("subscription_id", "plan_id", "valid_from")
    VALUES (NEW."id", NEW."plan_id", now())
    ON CONFLICT ("subscription_id", "valid_from")
      DO UPDATE SET "plan_id" = excluded."plan_id", "valid_until" = NULL;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "subscriptions_plan_periods"
  AFTER INSERT OR UPDATE OF "plan_id" ON "subscriptions"
  FOR EACH ROW EXECUTE FUNCTION "track_plan_periods"();
--> statement-breakpoint
CREATE FUNCTION "track_price_periods"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO "plan_price_periods" ("plan_id", "price", "currency", "valid_from")
      VALUES (NEW."id", NEW."price", NEW."currency", least(NEW."created_at", now()))
      ON CONFLICT DO NOTHING;
    RETURN NULL;
  END IF;
  IF OLD."price" = NEW."price" AND OLD."currency" = NEW."currency" THEN
    RETURN NULL;
  END IF;
  DELETE FROM "plan_price_periods"
    WHERE "plan_id" = NEW."id" AND "valid_until" IS NULL
      AND "valid_from" >= now()::timestamp (3) with time zone;
  UPDATE "plan_price_periods" SET "valid_until" = now()
    WHERE "plan_id" = NEW."id" AND "valid_until" IS NULL;
  INSERT INTO "plan_price_periods" ("plan_id", "price", "currency", "valid_from")
    VALUES (NEW."id", NEW."price", NEW."currency", now())
    ON CONFLICT ("plan_id", "valid_from")
      DO UPDATE SET "price" = excluded."price", "currency" = excluded."currency", "valid_until" = NULL;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "plans_price_periods"
  AFTER INSERT OR UPDATE OF "price", "currency" ON "plans"
  FOR EACH ROW EXECUTE FUNCTION "track_price_periods"();
--> statement-breakpoint
-- Lo anterior a esta migración: el plan y el precio actuales, desde la creación (la mejor
-- estimación disponible).
INSERT INTO "subscription_plan_periods" ("subscription_id", "plan_id", "valid_from")
  SELECT "id", "plan_id", "created_at" FROM "subscriptions";
--> statement-breakpoint
INSERT INTO "plan_price_periods" ("plan_id", "price", "currency", "valid_from")
  SELECT "id", "price", "currency", "created_at" FROM "plans";
