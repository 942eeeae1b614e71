import type { Context, Hono } from "hono";
import type { EdgeEnv } from "../env";

/**
 * Metadatos del servidor de autorización (RFC 8414). Solo clientes máquina: sin endpoint de
 * autorización ni ID tokens, así que no se anuncian response types ni algoritmos de ID token.
 */
function authorizationServerMetadata(c: Context<EdgeEnv>) {
  // Ya normalizado en la configuración: es el mismo `iss` que llevan los tokens.
  const issuer = c.var.deps.issuer;
  return {
    issuer,
    token_endpoint: `${issuer}/oauth/token`,
    jwks_uri: `${issuer}/.well-known/jwks.json`,
    revocation_endpoint: `${issuer}/oauth/revoke`,
    grant_types_supported: ["client_credentials", "refresh_token"],
    token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
    revocation_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
    response_types_supported: [],
  };
}

const cacheable = { "cache-control": "public, max-age=300" };

export function registerWellKnown(app: Hono<EdgeEnv>): void {
  app.get("/.well-known/jwks.json", (c) => c.json(c.var.deps.jwks, 200, cacheable));
  app.get("/.well-known/oauth-authorization-server", (c) =>
    c.json(authorizationServerMetadata(c), 200, cacheable),
  );
  // Para clientes que descubren por OpenID Connect (p. ej. para llegar al JWKS); `sub` es el
  // client_id, igual para todos los que lo miran.
  app.get("/.well-known/openid-configuration", (c) =>
    c.json(
      { ...authorizationServerMetadata(c), subject_types_supported: ["public"] },
      200,
      cacheable,
    ),
  );
}
