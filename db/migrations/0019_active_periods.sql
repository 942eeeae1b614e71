CREATE TABLE "subscription_active_periods" (
	"subscription_id" uuid NOT NULL,
	"active_from" timestamp (3) with time zone NOT NULL,
	"active_until" timestamp (3) with time zone,
	CONSTRAINT "subscription_active_periods_subscription_id_active_from_pk" PRIMARY KEY("subscription_id","active_from"),
	CONSTRAINT "subscription_active_periods_order" CHECK ("subscription_active_periods"."active_until" IS NULL OR "subscription_active_periods"."active_until" > "subscription_active_periods"."active_from")
);
--> statement-breakpoint
CREATE TABLE "tenant_instance_active_periods" (
	"tenant_instance_id" uuid NOT NULL,
	"active_from" timestamp (3) with time zone NOT NULL,
	"active_until" timestamp (3) with time zone,
	CONSTRAINT "tenant_instance_active_periods_tenant_instance_id_active_from_pk" PRIMARY KEY("tenant_instance_id","active_from"),
	CONSTRAINT "tenant_instance_active_periods_order" CHECK ("tenant_instance_active_periods"."active_until" IS NULL OR "tenant_instance_active_periods"."active_until" > "tenant_instance_active_periods"."active_from")
);
--> statement-breakpoint
ALTER TABLE "subscription_active_periods" ADD CONSTRAINT "subscription_active_periods_subscription_id_subscriptions_id_fk" FOREIGN KEY ("subscription_id") REFERENCES "public"."subscriptions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tenant_instance_active_periods" ADD CONSTRAINT "tenant_instance_active_periods_tenant_instance_id_tenant_instances_id_fk" FOREIGN KEY ("tenant_instance_id") REFERENCES "public"."tenant_instances"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "subscription_active_periods_open_uq" ON "subscription_active_periods" USING btree ("subscription_id") WHERE "subscription_active_periods"."active_until" IS NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "tenant_instance_active_periods_open_uq" ON "tenant_instance_active_periods" USING btree ("tenant_instance_id") WHERE "tenant_instance_active_periods"."active_until" IS NULL;--> statement-breakpoint
-- Historial de actividad en vez de left_active_at: con solo la última salida, una suscripción
-- suspendida todo el mes y reactivada antes de facturarlo se cobraba. Lo escribe un trigger: ningún
-- camino que cambie el estado (API, workers, DLQ, GDPR) puede olvidarlo.
DROP TRIGGER "subscriptions_left_active" ON "subscriptions";--> statement-breakpoint
DROP TRIGGER "tenant_instances_left_active" ON "tenant_instances";--> statement-breakpoint
DROP FUNCTION "track_left_active"();--> statement-breakpoint
CREATE FUNCTION "track_active_periods"() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  was_active boolean := false;
  is_active boolean := NEW."status"::text = 'active';
  -- Una fila creada ya activa lo está desde su creación (las cargas pueden fecharla antes).
  since timestamptz := now();
BEGIN
  IF TG_OP = 'UPDATE' THEN
    was_active := OLD."status"::text = 'active';
  ELSE
    since := least(NEW."created_at", now());
  END IF;
  IF is_active = was_active THEN
    RETURN NULL;
  END IF;
  IF TG_TABLE_NAME = 'subscriptions' THEN
    IF is_active THEN
      INSERT INTO "subscription_active_periods" ("subscription_id", "active_from")
        VALUES (NEW."id", since) ON CONFLICT DO NOTHING;
    ELSE
      -- Abierto y cerrado en el mismo milisegundo (p. ej., en la misma transacción): no duró
      -- nada y no cuenta. Se compara ya redondeado, como se guarda.
      DELETE FROM "subscription_active_periods"
        WHERE "subscription_id" = NEW."id" AND "active_until" IS NULL AND "active_from" >= now()::timestamp (3) with time zone;
      UPDATE "subscription_active_periods" SET "active_until" = now()
        WHERE "subscription_id" = NEW."id" AND "active_until" IS NULL;
    END IF;
  ELSE
    IF is_active THEN
      INSERT INTO "tenant_instance_active_periods" ("tenant_instance_id", "active_from")
        VALUES (NEW."id", since) ON CONFLICT DO NOTHING;
    ELSE
      DELETE FROM "tenant_instance_active_periods"
        WHERE "tenant_instance_id" = NEW."id" AND "active_until" IS NULL AND "active_from" >= now()::timestamp (3) with time zone;
      UPDATE "tenant_instance_active_periods" SET "active_until" = now()
        WHERE "tenant_instance_id" = NEW."id" AND "active_until" IS NULL;
    END IF;
  END IF;
  RETURN NULL;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "subscriptions_active_periods"
  AFTER INSERT OR UPDATE OF "status" ON "subscriptions"
  FOR EACH ROW EXECUTE FUNCTION "track_active_periods"();
--> statement-breakpoint
CREATE TRIGGER "tenant_instances_active_periods"
  AFTER INSERT OR UPDATE OF "status" ON "tenant_instances"
  FOR EACH ROW EXECUTE FUNCTION "track_active_periods"();
--> statement-breakpoint
-- Lo anterior a esta migración: lo activo, desde su creación; lo que dejó de estarlo, hasta
-- left_active_at (la mejor estimación disponible).
INSERT INTO "subscription_active_periods" ("subscription_id", "active_from", "active_until")
  SELECT "id", "created_at", NULL FROM "subscriptions" WHERE "status" = 'active'
  UNION ALL
  SELECT "id", "created_at", "left_active_at" FROM "subscriptions"
    WHERE "status" <> 'active' AND "left_active_at" > "created_at";
--> statement-breakpoint
INSERT INTO "tenant_instance_active_periods" ("tenant_instance_id", "active_from", "active_until")
  SELECT "id", "created_at", NULL FROM "tenant_instances" WHERE "status" = 'active'
  UNION ALL
  SELECT "id", "created_at", "left_active_at" FROM "tenant_instances"
    WHERE "status" <> 'active' AND "left_active_at" > "created_at";
--> statement-breakpoint
ALTER TABLE "subscriptions" DROP COLUMN "left_active_at";--> statement-breakpoint
ALTER TABLE "tenant_instances" DROP COLUMN "left_active_at";