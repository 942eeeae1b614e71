import type { Hono } from "hono";
import { requestLogger } from "../../core/http/request-context";
import { issueRefreshToken, rotateRefreshToken } from "../../db/refresh-tokens";
import type { EdgeEnv } from "../env";
import { claimsForClient } from "../oauth/claims";
import { authenticateClient, clientCredentials, requestSource } from "../oauth/client-auth";
import { noStore, OAuthFailure, oauthHandler, readForm } from "../oauth/errors";

// El mismo mensaje para token desconocido, vencido, revocado, reusado o de otro cliente.
const invalidGrant = () =>
  new OAuthFailure("invalid_grant", "The refresh token is invalid, expired or revoked", 400);

/** Los parámetros que lee /oauth/token (scope se acepta y se ignora: los roles son del cliente). */
const TOKEN_PARAMS = ["grant_type", "refresh_token", "scope", "client_id", "client_secret"];

export function registerOAuthToken(app: Hono<EdgeEnv>): void {
  app.post(
    "/oauth/token",
    oauthHandler(async (c) => {
      const form = await readForm(c, TOKEN_PARAMS);
      const grantType = form.get("grant_type");
      if (!grantType) throw new OAuthFailure("invalid_request", "grant_type is required", 400);
      if (grantType !== "client_credentials" && grantType !== "refresh_token") {
        // Sin repetir el valor: RFC 6749 §5.2 limita los caracteres de error_description.
        throw new OAuthFailure(
          "unsupported_grant_type",
          "Only the client_credentials and refresh_token grant types are supported",
          400,
        );
      }
      const presented = grantType === "refresh_token" ? form.get("refresh_token") : null;
      if (grantType === "refresh_token" && !presented) {
        throw new OAuthFailure("invalid_request", "refresh_token is required", 400);
      }
      const credentials = clientCredentials(c.req.header("authorization"), form);
      const source = requestSource(c);
      const deps = c.get("deps");
      const logger = requestLogger(c);
      const ttlSeconds = deps.oauth.refreshTokenTtlSeconds;

      const issued = await deps.withDb(c, async (db) => {
        // Refrescar vuelve a autenticar al cliente y a leer sus claims: un cliente revocado o
        // con otras instancias lo nota en el siguiente refresh, no dentro de 30 días.
        const client = await authenticateClient(db, credentials, source, deps.oauth, logger);
        const claims = claimsForClient(client);
        const clientId = client.clientId;
        if (!presented) {
          // RFC 6749 §4.4.3 no lo pide para client_credentials; el SDK lo usa para no reenviar
          // el secreto cada pocos minutos.
          return { claims, refreshToken: await issueRefreshToken(db, { clientId, ttlSeconds }) };
        }
        const rotation = await rotateRefreshToken(db, { token: presented, clientId, ttlSeconds });
        if (rotation.kind === "reused") {
          logger.warn(
            { clientId, familyId: rotation.familyId },
            "refresh token reused: family revoked",
          );
        }
        if (rotation.kind !== "rotated") {
          logger.info({ clientId, reason: rotation.kind }, "refresh token rejected");
          throw invalidGrant();
        }
        return { claims, refreshToken: rotation.token };
      });

      const { token, expiresIn } = await deps.signer.sign(issued.claims);
      logger.info({ clientId: issued.claims.sub, grantType }, "access token issued");
      return c.json(
        {
          access_token: token,
          token_type: "Bearer",
          expires_in: expiresIn,
          refresh_token: issued.refreshToken,
          // RFC 6749 §3.3: los roles concedidos. Un `scope` pedido no cambia lo que se concede,
          // así que se dice siempre qué se concedió.
          scope: issued.claims.roles.join(" "),
        },
        200,
        noStore,
      );
    }),
  );
}
