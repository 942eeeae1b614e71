import { and, eq, isNull } from "drizzle-orm";
import type { Context } from "hono";
import type { Logger } from "../../core/logger";
import { hashSecret, verifySecret } from "../../core/secret-hash";
import {
  type AuthAttemptKey,
  recordClientAuthOutcome,
  reserveClientAuthAttempt,
} from "../../db/client-auth-failures";
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

/** Cubo de los fallos de un origen con cualquier client_id ("*" no es un client_id posible). */
const ANY_CLIENT = "*";
/** Un client_id posible: los que emite la API (`adm_…`, `tnt_…`) y los de desarrollo. */
const CLIENT_ID_RE = /^[A-Za-z0-9._~-]+$/;
/** Cuánto espera un intento a que terminen los que llenan su cubo antes de responder 429. */
const BUSY_WAIT_MS = 5_000;
const BUSY_POLL_MS = 25;

type Slot = { key: AuthAttemptKey; windowStartedAt: Date };

/**
 * Autentica un cliente confidencial (todos los nuestros lo son: tienen secreto). El límite de
 * fallos es por client_id y por origen: desde un origen que lo superó se responde 429 sin mirar
 * el secreto, pero el cliente legítimo sigue entrando desde el suyo. Además un origen tiene un
 * tope de fallos con cualquier client_id, para que inventar uno por intento no dé hashes sin fin.
 * Solo cuentan los fallos: un acierto o un 429 devuelven su intento. Los contadores viven en
 * Postgres para valer entre isolates de workerd; el hash lento corre sin transacción ni conexión
 * retenidas. Un intento que encuentra su cubo lleno de intentos en curso (réplicas que arrancan a
 * la vez detrás de una IP) espera su turno: el secreto correcto no recibe 429 por ellos.
 */
export async function authenticateClient(
  db: Database,
  credentials: ClientCredentials,
  source: string,
  settings: OAuthSettings,
  logger: Logger,
): Promise<ApiClient> {
  const clientId = credentials.id;
  // Sin consultar la base: un id imposible (NUL, "*", basura larga) no es ningún cliente.
  if (clientId.length > MAX_CLIENT_ID_LENGTH || !CLIENT_ID_RE.test(clientId)) {
    throw invalidClient();
  }
  const window = settings.clientAuthFailureWindowSeconds;
  const buckets = [
    { key: { clientId: ANY_CLIENT, source }, maxFailures: settings.maxSourceAuthFailures },
    { key: { clientId, source }, maxFailures: settings.maxClientAuthFailures },
  ];
  const slots: Slot[] = [];
  const settle = (failed: boolean) =>
    Promise.all(slots.map((s) => recordClientAuthOutcome(db, s.key, s.windowStartedAt, failed)));
  for (const { key, maxFailures } of buckets) {
    const reservation = await reserveWhenFree(db, key, { maxFailures, windowSeconds: window });
    if (reservation.kind !== "granted") {
      await settle(false);
      const { retryAfter } = reservation;
      logger.warn(
        { clientId, source, retryAfter, anyClient: key.clientId === ANY_CLIENT },
        "client authentication locked out",
      );
      throw new OAuthFailure("invalid_client", "Too many failed attempts", 429, retryAfter);
    }
    slots.push({ key, windowStartedAt: reservation.windowStartedAt });
  }
  let client: ApiClient | undefined;
  let valid = false;
  try {
    [client] = await db
      .select()
      .from(apiClients)
      .where(and(eq(apiClients.clientId, clientId), isNull(apiClients.revokedAt)));
    // Un client_id desconocido también paga el hash lento: el tiempo de respuesta no revela
    // qué clientes existen.
    valid = await verifySecret(credentials.secret, client?.secretHash ?? (await dummyHash()));
  } catch (err) {
    // Sin veredicto (la base falló): el hueco se libera y el error sigue su camino.
    await settle(false).catch(() => {});
    throw err;
  }
  if (!client || !valid) {
    await settle(true);
    logger.info({ clientId, source }, "client authentication failed");
    throw invalidClient();
  }
  await settle(false);
  return client;
}

/** Reserva en el cubo; si está lleno de intentos en curso, reintenta hasta BUSY_WAIT_MS. */
async function reserveWhenFree(
  db: Database,
  key: AuthAttemptKey,
  policy: { maxFailures: number; windowSeconds: number },
): Promise<{ kind: "granted"; windowStartedAt: Date } | { kind: "locked"; retryAfter: number }> {
  const deadline = Date.now() + BUSY_WAIT_MS;
  for (;;) {
    const reservation = await reserveClientAuthAttempt(db, key, policy);
    if (reservation.kind !== "busy") return reservation;
    if (Date.now() >= deadline) return { kind: "locked", retryAfter: 1 };
    await new Promise((resolve) => setTimeout(resolve, BUSY_POLL_MS));
  }
}
