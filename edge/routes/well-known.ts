import type { Hono } from "hono";
import type { EdgeEnv } from "../env";

export function registerWellKnown(app: Hono<EdgeEnv>): void {
  app.get("/.well-known/jwks.json", (c) =>
    c.json(c.var.deps.jwks, 200, { "cache-control": "public, max-age=300" }),
  );
  app.get("/.well-known/openid-configuration", (c) => {
    // Ya normalizado en la configuración: es el mismo `iss` que llevan los tokens.
    const issuer = c.var.deps.issuer;
    return c.json(
      {
        issuer,
        token_endpoint: `${issuer}/oauth/token`,
        jwks_uri: `${issuer}/.well-known/jwks.json`,
        revocation_endpoint: `${issuer}/oauth/revoke`,
        grant_types_supported: ["client_credentials", "refresh_token"],
        token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
        revocation_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
        id_token_signing_alg_values_supported: ["ES256"],
        response_types_supported: ["token"],
        subject_types_supported: ["public"],
      },
      200,
      { "cache-control": "public, max-age=300" },
    );
  });
}
