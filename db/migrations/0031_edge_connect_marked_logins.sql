-- Cada usuario del edge lleva desde ahora la marca de su base (COMMENT ON ROLE, la pone
-- `npm run db:edge-user`). 0030 dio CONNECT a todos los miembros de farutech_edge; en una base
-- nueva ninguno es suyo aún (su usuario se crea después de migrar), así que todos son de otras
-- bases del servidor: se les quita. En una base en uso (con clientes OAuth) un usuario sin marca
-- puede ser el suyo de antes: lo conserva hasta que `db:edge-user` lo marque (y quite el resto);
-- los marcados para otra base lo pierden siempre.
DO $$
DECLARE
  member text;
  mark text := 'farutech edge login of control plane ' || current_database();
  in_use boolean;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'farutech_edge') THEN
    RETURN;
  END IF;
  in_use := EXISTS (SELECT 1 FROM api_clients);
  FOR member IN
    SELECT u.rolname FROM pg_auth_members m
      JOIN pg_roles r ON r.oid = m.roleid
      JOIN pg_roles u ON u.oid = m.member
    WHERE r.rolname = 'farutech_edge'
      AND shobj_description(u.oid, 'pg_authid') IS DISTINCT FROM mark
      AND (NOT in_use
        OR shobj_description(u.oid, 'pg_authid') LIKE 'farutech edge login of control plane %')
  LOOP
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM %I', current_database(), member);
  END LOOP;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'CONNECT of other edge users left as it was (not the database owner): revoke it by hand';
END $$;
