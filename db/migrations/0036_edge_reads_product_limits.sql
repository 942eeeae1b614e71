-- El edge lista en 0 los límites del producto de una instancia sin suscripción activa
-- (db/entitlements.ts): necesita leer sus nombres. Como en 0028, solo si el rol existe.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'farutech_edge') THEN
    GRANT SELECT ON product_limits TO farutech_edge;
  END IF;
END $$;
