import type { Hono } from "hono";
import type { TokenVerifier } from "../../core/auth/tokens";
import { requestLogger } from "../../core/http/request-context";
import { revokeRefreshTokenFamily } from "../../db/refresh-tokens";
import type { EdgeEnv } from "../env";
import { authenticateClient, clientCredentials, requestSource } from "../oauth/client-auth";
import { noStore, OAuthFailure, oauthHandler, readForm } from "../oauth/errors";

// Un JWT tiene tres partes con puntos; nuestros refresh tokens son base64url sin puntos.
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Un token inválido (o vencido) no es un access token nuestro: se responde 200 (RFC 7009 §2.2). */
async function isOurAccessToken(verifier: TokenVerifier, token: string): Promise<boolean> {
  try {
    await verifier.verify(token);
    return true;
  } catch {
    return false;
  }
}

const REVOKE_PARAMS = ["token", "token_type_hint", "client_id", "client_secret"];

/** RFC 7009: revocación de tokens. Responde 200 también si el token no existe o es de otro. */
export function registerOAuthRevoke(app: Hono<EdgeEnv>): void {
  app.post(
    "/oauth/revoke",
    oauthHandler(async (c) => {
      const form = await readForm(c, REVOKE_PARAMS);
      const token = form.get("token");
      if (!token) throw new OAuthFailure("invalid_request", "token is required", 400);
      const credentials = clientCredentials(c.req.header("authorization"), form);
      const source = requestSource(c);
      const deps = c.get("deps");
      const logger = requestLogger(c);
      // token_type_hint es solo una pista (RFC 7009 §2.1): la forma del token decide.
      await deps.withDb(c, async (db) => {
        const client = await authenticateClient(db, credentials, source, deps.oauth, logger);
        // Los access tokens son JWT autocontenidos que vencen en minutos
        // (AUTH_ACCESS_TOKEN_TTL): no se revocan uno a uno. Un 200 haría creer que ya no valen;
        // RFC 7009 §2.2.1 pide unsupported_token_type. Para cortar el acceso ya, se revoca el
        // cliente o su familia de refresh tokens.
        if (JWT_SHAPE.test(token) && (await isOurAccessToken(deps.verifier, token))) {
          throw new OAuthFailure(
            "unsupported_token_type",
            "Access tokens cannot be revoked; they expire within minutes. Revoke the refresh token or the client",
            400,
          );
        }
        const revoked = await revokeRefreshTokenFamily(db, token, client.clientId);
        if (revoked) logger.info({ clientId: client.clientId }, "refresh token family revoked");
      });
      return c.body(null, 200, noStore);
    }),
  );
}
