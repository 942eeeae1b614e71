-- Las URL de webhooks se muestran a support, a la auditoría, a la DLQ y a los logs solo con su
-- origen (la ruta o la query de muchos receptores es su token). Las filas anteriores a ese cambio
-- se dejan igual: origen y "/…" si había algo después (como core/redact-url.ts). Idempotente.
UPDATE "audit_log" SET
  "before" = CASE WHEN "before" ? 'url' THEN jsonb_set("before", '{url}', to_jsonb(
    regexp_replace("before"->>'url', '^(https?://)(?:[^@/?#]*@)?([^/?#]*).*$', '\1\2')
    || CASE WHEN regexp_replace("before"->>'url', '^https?://[^/?#]*', '') IN ('', '/') THEN '/' ELSE '/…' END
  )) ELSE "before" END,
  "after" = CASE WHEN "after" ? 'url' THEN jsonb_set("after", '{url}', to_jsonb(
    regexp_replace("after"->>'url', '^(https?://)(?:[^@/?#]*@)?([^/?#]*).*$', '\1\2')
    || CASE WHEN regexp_replace("after"->>'url', '^https?://[^/?#]*', '') IN ('', '/') THEN '/' ELSE '/…' END
  )) ELSE "after" END
WHERE "entity_type" = 'webhook_endpoint'
  AND ("before" ? 'url' OR "after" ? 'url');--> statement-breakpoint
-- El texto de error de las entregas fallidas nombraba el endpoint con origen y ruta.
UPDATE "dlq_entries" SET
  "error" = regexp_replace("error", '(https?://[^\s/?#)]+)[/?][^\s)]*', '\1/…', 'g')
WHERE "domain" = 'integration' AND "error" ~ 'https?://';
