-- Rol de mínimo privilegio del edge (expuesto a Internet): lee catálogo, planes, suscripciones y
-- el estado de las instancias para resolver entitlements, y lleva sus propias tablas de OAuth.
-- No ve clientes (datos personales), auditoría, webhooks ni cadenas de conexión cifradas, y no
-- escribe nada del plano de control. Su usuario de login se crea con `npm run db:edge-user`.
-- Los roles son del servidor: si otra base del mismo servidor ya lo creó, se reutiliza. Sin
-- permiso para crear roles (CREATEROLE) se avisa y la migración sigue; el edge seguirá con el
-- usuario que le den.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'farutech_edge') THEN
    CREATE ROLE farutech_edge NOLOGIN;
  END IF;
EXCEPTION
  -- Dos bases migrando a la vez en el mismo servidor: la otra lo acaba de crear.
  WHEN duplicate_object OR unique_violation THEN NULL;
  WHEN insufficient_privilege THEN
    RAISE NOTICE 'farutech_edge role not created (no CREATEROLE); create it and rerun the grants of 0028_edge_role.sql';
END $$;
--> statement-breakpoint
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'farutech_edge') THEN
    RETURN;
  END IF;
  -- Explícito: el worker de provisioning revoca CONNECT a PUBLIC en esta base (database-acl.ts).
  -- Solo el dueño de la base puede darlo; si migra otro usuario, lo da `npm run db:edge-user`.
  BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO farutech_edge', current_database());
  EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'CONNECT on this database not granted to farutech_edge (not its owner)';
  END;
  -- PUBLIC ya suele tenerlo; pedirlo sin ser dueño del esquema haría fallar la migración.
  IF NOT has_schema_privilege('farutech_edge', 'public', 'USAGE') THEN
    GRANT USAGE ON SCHEMA public TO farutech_edge;
  END IF;
  -- Entitlements (db/entitlements.ts).
  GRANT SELECT ON products, features, plans, plan_features, plan_limits, subscriptions,
    subscription_feature_overrides TO farutech_edge;
  -- De la instancia solo lo que decide sus entitlements: nada de cadenas de conexión ni cliente.
  GRANT SELECT (id, status, product_id) ON tenant_instances TO farutech_edge;
  -- OAuth (edge/oauth, db/refresh-tokens.ts, db/client-auth-failures.ts).
  GRANT SELECT ON api_clients TO farutech_edge;
  GRANT SELECT, INSERT, UPDATE ON refresh_tokens TO farutech_edge;
  GRANT SELECT, INSERT, UPDATE ON client_auth_failures TO farutech_edge;
END $$;
