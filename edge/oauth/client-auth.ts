import { and, eq, isNull } from "drizzle-orm";
import type { Logger } from "../../core/logger";
import { hashSecret, verifySecret } from "../../core/secret-hash";
import { clientLockedFor, recordClientAuthFailure } from "../../db/client-auth-failures";
import { apiClients } from "../../db/schema";
import type { Database } from "../../db/types";
import type { OAuthSettings } from "../env";
import { OAuthFailure } from "./errors";

export type ApiClient = typeof apiClients.$inferSelect;

export interface ClientCredentials {
  id: string;
  secret: string;
}

// Ningún client_id real es tan largo; así un atacante no llena la tabla de fallos con basura.
const MAX_CLIENT_ID_LENGTH = 200;

const invalidClient = () => new OAuthFailure("invalid_client", "Client authentication failed", 401);

let dummy: Promise<string> | undefined;
function dummyHash(): Promise<string> {
  dummy ??= hashSecret(crypto.randomUUID());
  return dummy;
}

function basicCredentials(header: string | undefined): ClientCredentials | undefined {
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

/** Credenciales por Basic o client_id/client_secret en el cuerpo, nunca por ambos a la vez. */
export function clientCredentials(
  authorization: string | undefined,
  form: URLSearchParams,
): ClientCredentials {
  const basic = basicCredentials(authorization);
  const bodyId = form.get("client_id");
  const bodySecret = form.get("client_secret");
  if (basic && (bodyId || bodySecret)) {
    throw new OAuthFailure("invalid_request", "Use only one client authentication method", 400);
  }
  const id = basic?.id ?? bodyId;
  const secret = basic?.secret ?? bodySecret;
  if (!id || !secret) throw invalidClient();
  return { id, secret };
}

/**
 * Autentica un cliente confidencial (todos los nuestros lo son: tienen secreto). Un client_id
 * bloqueado por demasiados fallos recibe 429 sin que se mire el secreto; el contador vive en
 * Postgres para que valga entre isolates de workerd.
 */
export async function authenticateClient(
  db: Database,
  credentials: ClientCredentials,
  settings: OAuthSettings,
  logger: Logger,
): Promise<ApiClient> {
  const clientId = credentials.id;
  if (clientId.length > MAX_CLIENT_ID_LENGTH) throw invalidClient();
  const policy = {
    maxFailures: settings.maxClientAuthFailures,
    windowSeconds: settings.clientAuthFailureWindowSeconds,
  };
  const retryAfter = await clientLockedFor(db, clientId, policy);
  if (retryAfter !== undefined) {
    logger.warn({ clientId, retryAfter }, "client authentication locked out");
    throw new OAuthFailure("invalid_client", "Too many failed attempts", 429, retryAfter);
  }
  const [client] = await db
    .select()
    .from(apiClients)
    .where(and(eq(apiClients.clientId, clientId), isNull(apiClients.revokedAt)));
  // Un client_id desconocido también paga el hash lento: el tiempo de respuesta no revela
  // qué clientes existen.
  const stored = client?.secretHash ?? (await dummyHash());
  const valid = await verifySecret(credentials.secret, stored);
  if (!client || !valid) {
    const failures = await recordClientAuthFailure(db, clientId, policy);
    logger.info({ clientId, failures }, "client authentication failed");
    throw invalidClient();
  }
  return client;
}
