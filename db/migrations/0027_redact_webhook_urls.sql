-- Las URL de webhooks se muestran a support, a la auditoría, a la DLQ y a los logs solo con su
-- origen (la ruta o la query de muchos receptores es su token). Las filas anteriores a ese cambio
-- quedan igual que core/redact-url.ts: esquema y host en minúsculas, sin usuario ni contraseña, y
-- "/…" si había algo después. Solo se toca un `url` de texto; idempotente.
UPDATE "audit_log" SET
  "before" = CASE WHEN jsonb_typeof("before") IS DISTINCT FROM 'object' THEN "before"
  WHEN jsonb_typeof("before"->'url') = 'string' THEN jsonb_set("before", '{url}', to_jsonb(
    CASE WHEN "before"->>'url' ~* '^https?://[^/?#\\]' THEN
      lower(substring("before"->>'url' from '^([A-Za-z]+://)'))
      || lower(regexp_replace(substring("before"->>'url' from '^[A-Za-z]+://([^/?#\\]*)'), '^.*@', ''))
      || CASE WHEN regexp_replace("before"->>'url', '^[A-Za-z]+://[^/?#\\]*', '') ~ '^/?(#.*)?$' THEN '/' ELSE '/…' END
    ELSE '<invalid url>' END
  )) - 'urlFingerprint'
  ELSE "before" - 'urlFingerprint' END,
  "after" = CASE WHEN jsonb_typeof("after") IS DISTINCT FROM 'object' THEN "after"
  WHEN jsonb_typeof("after"->'url') = 'string' THEN jsonb_set("after", '{url}', to_jsonb(
    CASE WHEN "after"->>'url' ~* '^https?://[^/?#\\]' THEN
      lower(substring("after"->>'url' from '^([A-Za-z]+://)'))
      || lower(regexp_replace(substring("after"->>'url' from '^[A-Za-z]+://([^/?#\\]*)'), '^.*@', ''))
      || CASE WHEN regexp_replace("after"->>'url', '^[A-Za-z]+://[^/?#\\]*', '') ~ '^/?(#.*)?$' THEN '/' ELSE '/…' END
    ELSE '<invalid url>' END
  )) - 'urlFingerprint'
  ELSE "after" - 'urlFingerprint' END
WHERE "entity_type" = 'webhook_endpoint'
  AND (jsonb_typeof("before") = 'object' OR jsonb_typeof("after") = 'object');--> statement-breakpoint
-- El texto de error de las entregas fallidas nombraba el endpoint "(origen/ruta)", y algún error
-- de fetch repetía la URL entera (con credenciales): primero las de entre paréntesis, luego sueltas.
UPDATE "dlq_entries" SET
  "error" = regexp_replace(
    regexp_replace("error", '\((https?://)([^\s/?#@]*@)?([^\s/?#)\\]+)\S*\)(\s|$)', '(\1\3/…)\4', 'gi'),
    '(?<!\()(https?://)([^\s/?#@]*@)?([^\s/?#)\\]+)([/?\\#]\S*)?', '\1\3/…', 'gi')
WHERE "domain" = 'integration' AND "error" ~* 'https?://';
