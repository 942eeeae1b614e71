import { and, eq, isNull } from "drizzle-orm";
import type { Context } from "hono";
import { sha256Hex } from "../../core/ids";
import type { Logger } from "../../core/logger";
import { hashSecret, verifySecret } from "../../core/secret-hash";
import {
  ALL_SOURCES,
  type AuthAttemptKey,
  isKnownSource,
  type LockoutPolicy,
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

/**
 * Credenciales de `Authorization: Basic`. Otro esquema no es autenticación del cliente y se
 * ignora; un Basic que no se puede leer es un intento fallido (invalid_client), no una cabecera
 * ausente: si no, se usarían las del cuerpo y la petición traería dos métodos (RFC 6749 §2.3).
 */
function basicCredentials(header: string | undefined): ClientCredentials | undefined {
  if (!/^Basic(?:\s|$)/i.test(header ?? "")) return undefined;
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
  if (!match?.[1]) throw invalidClient();
  try {
    const decoded = atob(match[1]);
    const colon = decoded.indexOf(":");
    if (colon < 0) throw invalidClient();
    // RFC 6749 §2.3.1: id y secreto van form-urlencoded dentro de Basic.
    return {
      id: decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, " ")),
      secret: decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, " ")),
    };
  } catch {
    throw invalidClient();
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

/** Cubo de los intentos de un origen con client_id que no existen ("*" no es un client_id posible). */
const ANY_CLIENT = "*";
/** Un client_id posible: los que emite la API (`adm_…`, `tnt_…`) y los de desarrollo. */
const CLIENT_ID_RE = /^[A-Za-z0-9._~-]+$/;
/** Cuánto espera un intento a que terminen los que llenan su cubo antes de responder 429. */
const BUSY_WAIT_MS = 5_000;
/** Espera entre sondeos del cubo: crece para no convertir una ráfaga en una lluvia de consultas. */
const BUSY_POLL_MS = [25, 50, 100, 200, 250] as const;
/** Secretos ya verificados que se recuerdan por isolate (los más viejos se olvidan). */
const VERIFIED_MAX = 1_000;

/**
 * Secretos verificados: (client_id, SHA-256 del secreto) → hash PBKDF2 con el que coincidió. Un
 * acierto repetido (réplicas que arrancan a la vez, refrescos cada pocos minutos) no vuelve a pagar
 * el hash lento; si el secreto del cliente cambia, su hash guardado ya no coincide. La revocación
 * se mira en la base en cada intento. Los intentos simultáneos con el mismo secreto comparten un
 * solo hash.
 */
const verified = new Map<string, string>();
const verifying = new Map<string, Promise<boolean>>();

async function secretMatches(client: ApiClient, secret: string): Promise<boolean> {
  const { secretHash } = client;
  const key = `${client.clientId}\n${await sha256Hex(secret)}`;
  if (verified.get(key) === secretHash) return true;
  // Se comparte solo la comprobación contra el mismo hash: si el secreto cambió mientras otra
  // estaba en curso, esta compara con el nuevo (y no recuerda el viejo como válido).
  const inFlight = `${key}\n${secretHash}`;
  let pending = verifying.get(inFlight);
  if (!pending) {
    pending = verifySecret(secret, secretHash).finally(() => verifying.delete(inFlight));
    verifying.set(inFlight, pending);
  }
  const ok = await pending;
  if (ok) {
    verified.delete(key);
    verified.set(key, secretHash);
    if (verified.size > VERIFIED_MAX) {
      const [oldest] = verified.keys();
      if (oldest !== undefined) verified.delete(oldest);
    }
  }
  return ok;
}

/**
 * Autentica un cliente confidencial (todos los nuestros lo son: tienen secreto). El límite de
 * fallos es por client_id y por origen: desde un origen que lo superó se responde 429 sin mirar
 * el secreto, pero el cliente legítimo sigue entrando desde el suyo. Los client_id que no existen
 * comparten otro cubo por origen (`AUTH_SOURCE_FAILURE_LIMIT`): inventar uno por intento no da
 * hashes sin fin ni una fila por intento, y no toca a los clientes que sí existen. Solo cuentan
 * los fallos. Sumando todos los orígenes, el client_id tiene otro tope
 * (`maxClientAuthFailuresAllSources`): pasado, solo entran los orígenes con un acierto reciente.
 * Los contadores viven en Postgres para valer entre isolates de workerd; el hash
 * lento corre sin transacción ni fila bloqueadas. Un intento que encuentra su cubo lleno de
 * intentos en curso (réplicas que arrancan a la vez detrás de una IP) espera su turno.
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
  const [client] = await db
    .select()
    .from(apiClients)
    .where(and(eq(apiClients.clientId, clientId), isNull(apiClients.revokedAt)));
  const key = { clientId: client ? clientId : ANY_CLIENT, source };
  // Un client_id que no existe puede ser el secreto (Basic con el orden cambiado): en los logs va
  // solo su huella, que sigue una ráfaga sin revelar el valor.
  const who = client
    ? { clientId, knownClient: true }
    : { unknownClientId: (await sha256Hex(clientId)).slice(0, 12), knownClient: false };
  const maxFailures = client ? settings.maxClientAuthFailures : settings.maxSourceAuthFailures;
  const windowSeconds = settings.clientAuthFailureWindowSeconds;
  // El cubo antes que el secreto, también si ya se verificó: bloqueado, ningún intento se evalúa.
  const reservation = await reserveWhenFree(db, key, { maxFailures, windowSeconds });
  if (reservation.kind !== "granted") {
    const busy = reservation.kind === "busy";
    logger.warn(
      { ...who, source, retryAfter: reservation.retryAfter },
      busy ? "client authentication busy" : "client authentication locked out",
    );
    throw new OAuthFailure(
      "invalid_client",
      busy ? "Too many concurrent attempts; retry shortly" : "Too many failed attempts",
      429,
      reservation.retryAfter,
    );
  }
  // Tope del client_id sumando todos los orígenes: también una reserva (los intentos en curso
  // cuentan), así una ráfaga desde miles de orígenes a la vez no pasa de él. Sin hueco, solo entra
  // un origen con un acierto reciente, y sin ocupar hueco del tope.
  const release = (k: AuthAttemptKey, windowStartedAt: Date) =>
    recordClientAuthOutcome(db, k, windowStartedAt, "released").catch(() => {});
  const allKey = { clientId, source: ALL_SOURCES };
  let all: Date | undefined;
  if (client) {
    try {
      const policy = { maxFailures: settings.maxClientAuthFailuresAllSources, windowSeconds };
      let shared = await reserveClientAuthAttempt(db, allKey, policy);
      // Un origen conocido no espera; uno nuevo espera su turno si solo está lleno de intentos
      // en curso (réplicas nuevas que arrancan a la vez), como en el cubo de su origen.
      const known = shared.kind !== "granted" && (await isKnownSource(db, key));
      if (shared.kind === "busy" && !known) shared = await reserveWhenFree(db, allKey, policy);
      if (shared.kind === "granted") all = shared.windowStartedAt;
      else if (!known) {
        // Devuelve su hueco sin contarlo como fallo: el secreto no se miró.
        await release(key, reservation.windowStartedAt);
        const busy = shared.kind === "busy";
        const retryAfter = shared.kind === "locked" ? shared.retryAfter : 1;
        logger.warn(
          { ...who, source, retryAfter },
          busy
            ? "client authentication busy across sources"
            : "client authentication locked out for sources without a recent success",
        );
        throw new OAuthFailure(
          "invalid_client",
          busy ? "Too many concurrent attempts; retry shortly" : "Too many failed attempts",
          429,
          retryAfter,
        );
      }
    } catch (err) {
      if (!(err instanceof OAuthFailure)) await release(key, reservation.windowStartedAt);
      throw err;
    }
  }
  let valid = false;
  try {
    if (client) valid = await secretMatches(client, credentials.secret);
    // Un client_id desconocido también paga el hash lento: el tiempo de respuesta es el mismo.
    else await verifySecret(credentials.secret, await dummyHash());
  } catch (err) {
    await Promise.all([release(key, reservation.windowStartedAt), all && release(allKey, all)]);
    throw err;
  }
  // Filas distintas: las dos a la vez, no un viaje a la base detrás del otro.
  await Promise.all([
    recordClientAuthOutcome(db, key, reservation.windowStartedAt, valid ? "succeeded" : "failed"),
    all && recordClientAuthOutcome(db, allKey, all, valid ? "released" : "failed"),
  ]);
  if (!client || !valid) {
    logger.info({ ...who, source }, "client authentication failed");
    throw invalidClient();
  }
  return client;
}

/** Reserva en el cubo; si está lleno de intentos en curso, reintenta hasta BUSY_WAIT_MS. */
async function reserveWhenFree(
  db: Database,
  key: AuthAttemptKey,
  policy: LockoutPolicy,
): Promise<
  { kind: "granted"; windowStartedAt: Date } | { kind: "locked" | "busy"; retryAfter: number }
> {
  const deadline = Date.now() + BUSY_WAIT_MS;
  for (let attempt = 0; ; attempt++) {
    const reservation = await reserveClientAuthAttempt(db, key, policy);
    if (reservation.kind !== "busy") return reservation;
    if (Date.now() >= deadline) return { kind: "busy", retryAfter: 1 };
    const pause = BUSY_POLL_MS[Math.min(attempt, BUSY_POLL_MS.length - 1)] ?? 250;
    // Con algo de azar: los que esperan a la vez no vuelven a chocar en el mismo instante.
    await new Promise((resolve) => setTimeout(resolve, pause * (0.5 + Math.random())));
  }
}
