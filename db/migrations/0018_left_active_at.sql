ALTER TABLE "subscriptions" ADD COLUMN "left_active_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "tenant_instances" ADD COLUMN "left_active_at" timestamp (3) with time zone;--> statement-breakpoint
-- La facturación de un periodo cobra lo que estuvo activo en él, aunque hoy ya no lo esté (una
-- suscripción cancelada el día 28 paga su mes). Lo lleva un trigger: así ningún camino que cambie
-- el estado (API, workers, DLQ, GDPR) puede olvidarlo.
CREATE FUNCTION "track_left_active"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW."status"::text = 'active' THEN
    NEW."left_active_at" := NULL;
  ELSIF OLD."status"::text = 'active' THEN
    NEW."left_active_at" := now();
  END IF;
  RETURN NEW;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "subscriptions_left_active"
  BEFORE UPDATE OF "status" ON "subscriptions"
  FOR EACH ROW EXECUTE FUNCTION "track_left_active"();
--> statement-breakpoint
CREATE TRIGGER "tenant_instances_left_active"
  BEFORE UPDATE OF "status" ON "tenant_instances"
  FOR EACH ROW EXECUTE FUNCTION "track_left_active"();
--> statement-breakpoint
-- Lo ya inactivo: su última modificación es la mejor estimación de cuándo dejó de estar activo.
UPDATE "subscriptions" SET "left_active_at" = "updated_at" WHERE "status" IN ('suspended', 'cancelled');
--> statement-breakpoint
UPDATE "tenant_instances" SET "left_active_at" = "updated_at" WHERE "status" IN ('suspended', 'decommissioned');
