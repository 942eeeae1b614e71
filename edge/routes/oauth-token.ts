import { and, eq, isNull } from "drizzle-orm";
import type { Hono } from "hono";
import type { AccessClaims } from "../../core/auth/tokens";
import { verifySecret } from "../../core/secret-hash";
import { apiClients, tenantInstances } from "../../db/schema";
import type { EdgeEnv } from "../env";

type OAuthError =
  | "invalid_request"
  | "invalid_client"
  | "invalid_grant"
  | "unsupported_grant_type"
  | "invalid_scope";

// Errores con la forma de RFC 6749 §5.2 (no problem+json: el RFC manda aquí).
function oauthError(error: OAuthError, description: string, status: 400 | 401) {
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "cache-control": "no-store",
    pragma: "no-cache",
  };
  if (status === 401) headers["www-authenticate"] = 'Basic realm="farutech", charset="UTF-8"';
  return new Response(JSON.stringify({ error, error_description: description }), {
    status,
    headers,
  });
}

function basicCredentials(header: string | undefined): { id: string; secret: string } | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
  if (!match?.[1]) return undefined;
  let decoded: string;
  try {
    decoded = atob(match[1]);
  } catch {
    return undefined;
  }
  const colon = decoded.indexOf(":");
  if (colon < 0) return undefined;
  // RFC 6749 §2.3.1: id y secreto van form-urlencoded dentro de Basic.
  try {
    return {
      id: decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, " ")),
      secret: decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, " ")),
    };
  } catch {
    return undefined;
  }
}

export function registerOAuthToken(app: Hono<EdgeEnv>): void {
  app.post("/oauth/token", async (c) => {
    const contentType = c.req.header("content-type") ?? "";
    if (!contentType.toLowerCase().startsWith("application/x-www-form-urlencoded")) {
      return oauthError(
        "invalid_request",
        "The body must be application/x-www-form-urlencoded",
        400,
      );
    }
    const form = new URLSearchParams(await c.req.text());
    const grantType = form.get("grant_type");
    if (!grantType) return oauthError("invalid_request", "grant_type is required", 400);
    if (grantType !== "client_credentials") {
      return oauthError("unsupported_grant_type", `Grant type ${grantType} is not supported`, 400);
    }
    const basic = basicCredentials(c.req.header("authorization"));
    const bodyId = form.get("client_id");
    const bodySecret = form.get("client_secret");
    if (basic && (bodyId || bodySecret)) {
      return oauthError("invalid_request", "Use only one client authentication method", 400);
    }
    const clientId = basic?.id ?? bodyId;
    const secret = basic?.secret ?? bodySecret;
    if (!clientId || !secret)
      return oauthError("invalid_client", "Client authentication failed", 401);

    const deps = c.var.deps;
    const claims = await deps.withDb(c, async (db): Promise<AccessClaims | undefined> => {
      const [client] = await db
        .select()
        .from(apiClients)
        .where(and(eq(apiClients.clientId, clientId), isNull(apiClients.revokedAt)));
      if (!client || !(await verifySecret(secret, client.secretHash))) return undefined;
      let instanceIds = client.instanceIds;
      if (client.kind === "tenant" && instanceIds.length === 0 && client.customerId) {
        // Sin lista explícita, un cliente de tenant ve todas las instancias de su cliente.
        const rows = await db
          .select({ id: tenantInstances.id })
          .from(tenantInstances)
          .where(eq(tenantInstances.customerId, client.customerId));
        instanceIds = rows.map((r) => r.id);
      }
      return {
        sub: client.clientId,
        tenant_id: client.customerId,
        instance_ids: instanceIds,
        roles: client.roles,
      };
    });
    if (!claims) {
      c.var.logger.info({ clientId }, "client authentication failed");
      return oauthError("invalid_client", "Client authentication failed", 401);
    }
    const { token, expiresIn } = await deps.signer.sign(claims);
    c.var.logger.info({ clientId, roles: claims.roles }, "access token issued");
    return c.json({ access_token: token, token_type: "Bearer", expires_in: expiresIn }, 200, {
      "cache-control": "no-store",
      pragma: "no-cache",
    });
  });
}
