-- CONNECT a esta base por usuario del edge, no por rol: farutech_edge es del servidor, así que con
-- CONNECT para el rol (o para PUBLIC) el usuario del edge de otra base del mismo servidor (staging
-- junto a producción) entraba aquí con los permisos de farutech_edge (api_clients, refresh_tokens).
-- Los usuarios del edge que ya existen conservan el acceso, uno a uno (no se sabe de qué base es
-- cada uno: quita el de los ajenos con REVOKE CONNECT); los nuevos lo reciben de
-- `npm run db:edge-user`. Las funciones y los workers entran como dueño de la base.
DO $$
DECLARE
  member text;
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'farutech_edge') THEN
    FOR member IN
      SELECT u.rolname FROM pg_auth_members m
        JOIN pg_roles r ON r.oid = m.roleid
        JOIN pg_roles u ON u.oid = m.member
      WHERE r.rolname = 'farutech_edge'
    LOOP
      EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), member);
    END LOOP;
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM farutech_edge', current_database());
  END IF;
  EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', current_database());
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'CONNECT on this database left as it was (not its owner): revoke it from PUBLIC and farutech_edge by hand';
END $$;
