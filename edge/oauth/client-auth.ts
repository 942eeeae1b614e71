import { and, eq, isNull } from "drizzle-orm";
import type { Context } from "hono";
import type { Logger } from "../../core/logger";
import { hashSecret, verifySecret } from "../../core/secret-hash";
import { releaseClientAuthAttempt, reserveClientAuthAttempt } from "../../db/client-auth-failures";
import { apiClients } from "../../db/schema";
import type { Database } from "../../db/types";
import type { EdgeEnv, OAuthSettings } from "../env";
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
  // RFC 6749 §3.2: un parámetro sin valor cuenta como omitido.
  const bodyId = form.get("client_id") || null;
  const bodySecret = form.get("client_secret") || null;
  // RFC 6749 §2.3.1: client_id solo no autentica, así que junto a Basic vale si es el mismo id.
  if (basic && bodySecret !== null) {
    throw new OAuthFailure("invalid_request", "Use only one client authentication method", 400);
  }
  if (basic && bodyId !== null && bodyId !== basic.id) {
    throw new OAuthFailure(
      "invalid_request",
      "client_id does not match the authenticated client",
      400,
    );
  }
  const id = basic?.id ?? bodyId;
  const secret = basic?.secret ?? bodySecret;
  if (!id || !secret) throw invalidClient();
  return { id, secret };
}

/** Origen de quien se presenta cuando la petición no trae dirección de cliente fiable. */
export const UNKNOWN_SOURCE = "unknown";

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

function ipv6Groups(ip: string): string[] | undefined {
  if (ip.length > 39 || !/^[0-9a-f:]+$/.test(ip)) return undefined;
  const halves = ip.split("::");
  if (halves.length > 2) return undefined;
  const part = (text: string | undefined) => (text ? text.split(":") : []);
  const head = part(halves[0]);
  const tail = part(halves[1]);
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  return groups.map((g) => g.replace(/^0+(?=.)/, ""));
}

/**
 * Origen del intento para el contador de fallos, a partir de `cf-connecting-ip` (Cloudflare la
 * pone y pisa la del cliente). IPv6 cuenta por /64: quien tiene una /64 tiene 2^64 direcciones.
 * Sin cabecera o con basura, todos comparten UNKNOWN_SOURCE: no se estrenan cubos inventando.
 */
export function clientAuthSource(header: string | undefined): string {
  const raw = header?.trim().toLowerCase() ?? "";
  // Una IPv4 escrita como IPv6 (::ffff:a.b.c.d) es la misma dirección y el mismo cubo.
  const ip = raw.startsWith("::ffff:") && IPV4.test(raw.slice(7)) ? raw.slice(7) : raw;
  if (IPV4.test(ip)) return ip;
  const groups = ipv6Groups(ip);
  return groups ? `${groups.slice(0, 4).join(":")}::/64` : UNKNOWN_SOURCE;
}

/** Origen de la petición según el runtime (ver EdgeDeps.clientAddress). */
export function requestSource(c: Context<EdgeEnv>): string {
  const fromRuntime = c.get("deps").clientAddress?.(c);
  return clientAuthSource(fromRuntime ?? c.req.header("cf-connecting-ip"));
}

/**
 * Autentica un cliente confidencial (todos los nuestros lo son: tienen secreto). El límite de
 * fallos es por client_id y por origen: desde un origen que lo superó se responde 429 sin mirar
 * el secreto, pero el cliente legítimo sigue entrando desde el suyo. Solo cuentan los fallos: un
 * acierto o un 429 devuelven su intento. Los contadores viven en Postgres para valer entre
 * isolates de workerd.
 */
export async function authenticateClient(
  db: Database,
  credentials: ClientCredentials,
  source: string,
  settings: OAuthSettings,
  logger: Logger,
): Promise<ApiClient> {
  const clientId = credentials.id;
  // Con NUL no es un client_id posible (Postgres no guarda NUL en text): ni consulta ni contador.
  if (clientId.length > MAX_CLIENT_ID_LENGTH || clientId.includes("\u0000")) throw invalidClient();
  const key = { clientId, source };
  // La reserva bloquea la fila (client_id, origen) hasta el commit: los intentos simultáneos de
  // un mismo origen se verifican de uno en uno y cada uno ve los fallos ya confirmados, no los
  // que siguen en curso. Así un secreto correcto nunca choca con intentos en vuelo y N conjeturas
  // a la vez siguen sin pasar del límite. Cuesta serializar el hash solo dentro de ese cubo.
  const outcome = await db.transaction(async (tx) => {
    const reservation = await reserveClientAuthAttempt(tx, key, {
      maxFailures: settings.maxClientAuthFailures,
      windowSeconds: settings.clientAuthFailureWindowSeconds,
    });
    if (!reservation.allowed) {
      await releaseClientAuthAttempt(tx, key, reservation.windowStartedAt);
      return { kind: "locked" as const, retryAfter: reservation.retryAfter };
    }
    const [client] = await tx
      .select()
      .from(apiClients)
      .where(and(eq(apiClients.clientId, clientId), isNull(apiClients.revokedAt)));
    // Un client_id desconocido también paga el hash lento: el tiempo de respuesta no revela
    // qué clientes existen.
    const stored = client?.secretHash ?? (await dummyHash());
    const valid = await verifySecret(credentials.secret, stored);
    if (!client || !valid) return { kind: "failed" as const, failures: reservation.attempts };
    await releaseClientAuthAttempt(tx, key, reservation.windowStartedAt);
    return { kind: "authenticated" as const, client };
  });
  if (outcome.kind === "locked") {
    const { retryAfter } = outcome;
    logger.warn({ clientId, source, retryAfter }, "client authentication locked out");
    throw new OAuthFailure("invalid_client", "Too many failed attempts", 429, retryAfter);
  }
  if (outcome.kind === "failed") {
    logger.info({ clientId, source, failures: outcome.failures }, "client authentication failed");
    throw invalidClient();
  }
  return outcome.client;
}
