import { and, asc, count, eq, getTableColumns, inArray, or, sql } from "drizzle-orm";
import { z } from "zod";
import { entitlementsChangedSchema } from "../../contracts/events";
import { streams, subjects } from "../../contracts/streams";
import type { Logger } from "../../core/logger";
import { redactUrl } from "../../core/redact-url";
import { MAX_DELIVER } from "../../core/retry-policy";
import { type SecretBox, secretContext } from "../../core/secret-box";
import { SIGNATURE_HEADER, signWebhook } from "../../core/webhook-signature";
import { writeAudit } from "../../db/audit";
import { executeAll } from "../../db/batch";
import {
  dlqEntries,
  tenantInstances,
  webhookDeliveries,
  webhookEndpoints,
  webhookFailures,
} from "../../db/schema";
import type { Database } from "../../db/types";
import type { WorkerDefinition } from "../runtime/consumer";
import { errorMessage, PermanentError } from "../runtime/errors";
import { isBlockedDestination, webhookFetch } from "./destination";

export const INTEGRATION_WORKER = "integration-worker";

// Envíos simultáneos por mensaje: un endpoint lento no retrasa a los demás.
const DELIVERY_LANES = 4;

export interface IntegrationWorkerDeps {
  db: Database;
  secretBox: SecretBox;
  timeoutMs?: number;
  /** Entregar también a direcciones privadas o locales (WEBHOOK_ALLOW_PRIVATE_TARGETS). */
  allowPrivateTargets?: boolean;
  /**
   * Eventos seguidos en la DLQ tras los que un endpoint se desactiva
   * (WEBHOOK_DISABLE_AFTER_FAILURES; 0, nunca).
   */
  disableAfterFailures?: number;
}

export const DEFAULT_WEBHOOK_DISABLE_AFTER_FAILURES = 20;
const WORKER_ACTOR = "system:integration-worker";

/**
 * El replay de la DLQ publica los mismos datos con un id de evento nuevo: la clave de entrega
 * (id del evento original) viaja en los datos para no reenviar a los endpoints ya servidos.
 */
export const integrationEventSchema = entitlementsChangedSchema.extend({
  webhookEventId: z.uuid().optional(),
  /** La hora del cambio original: un replay no la reemplaza por la suya en el cuerpo firmado. */
  webhookOccurredAt: z.iso.datetime().optional(),
});
export type IntegrationEvent = z.infer<typeof integrationEventSchema>;

/** Un endpoint y si su secreto anterior sigue firmando (decidido con el reloj de la base). */
type Endpoint = typeof webhookEndpoints.$inferSelect & { previousSigns: boolean };

/** Desfase con la base a partir del cual se avisa: los receptores toleran ±300 s. */
const CLOCK_SKEW_WARNING_MS = 30_000;

type DeliveryOutcome =
  | { ok: true }
  /** `platform`: la falla es nuestra (p. ej. sin la clave del secreto), no del receptor. */
  | { ok: false; permanent: boolean; reason: string; platform?: boolean };

interface EndpointFailure {
  endpoint: Endpoint;
  permanent: boolean;
  reason: string;
  platform?: boolean;
}

/** 4xx (salvo 408 y 429) no mejora reintentando. */
function isPermanentStatus(status: number): boolean {
  // Una redirección no se sigue (el cuerpo firmado iría a otra URL): hay que registrar la final.
  if (status >= 300 && status < 400) return true;
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

function hasCredentials(url: string): boolean {
  try {
    const u = new URL(url);
    return u.username !== "" || u.password !== "";
  } catch {
    return false;
  }
}

/** Aplica `fn` a cada elemento, como mucho `lanes` a la vez, empezando en el orden dado. */
async function inLanes<T, R>(items: T[], lanes: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < items.length; i = next++) {
      const item = items[i];
      if (item !== undefined) results[i] = await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(lanes, items.length) }, lane));
  return results;
}

function describeFailures(failures: EndpointFailure[], total: number): string {
  const parts = failures.map(
    (f) =>
      `endpoint ${f.endpoint.id} (${redactUrl(f.endpoint.url)}) ${f.reason} [${f.permanent ? "permanent" : "transient"}]`,
  );
  return `webhook delivery failed for ${failures.length} of ${total} endpoints: ${parts.join("; ")}`;
}

/*
 * Entrega firmada de entitlements.changed a los endpoints del producto o de la instancia. Cada
 * endpoint es independiente: las entregas confirmadas se registran por (evento, endpoint) y una
 * reentrega o un replay solo envía a los pendientes. Mientras quede alguno, el mensaje falla con
 * la política común: se reintenta si algún fallo es transitorio y va a la DLQ cuando solo quedan
 * permanentes (o se agotan las entregas). Un receptor puede recibir un evento más de una vez:
 * deduplica por Farutech-Event-Id, que se conserva también en un replay.
 */
export function integrationWorker(deps: IntegrationWorkerDeps): WorkerDefinition<IntegrationEvent> {
  const timeoutMs = deps.timeoutMs ?? 5_000;
  const send = webhookFetch(deps.allowPrivateTargets ?? false);

  // Diferencia entre el reloj de la base y el de este host, medida en cada lectura de endpoints:
  // la firma lleva la hora de la base, así un host con la hora corrida no hace rechazar (y
  // desactivar) todos los webhooks por una marca fuera de la tolerancia del receptor.
  let clockOffsetMs = 0;
  let skewWarnedAt = 0;
  const post = async (endpoint: Endpoint, secrets: string[], eventId: string, body: string) => {
    const timestamp = Math.floor((Date.now() + clockOffsetMs) / 1000);
    const res = await send(endpoint.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        [SIGNATURE_HEADER]: await signWebhook(secrets, body, timestamp),
        "Farutech-Event-Id": eventId,
      },
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(timeoutMs),
    });
    // Un cuerpo sin leer retiene la conexión; no se necesita, así que se descarta siempre.
    await res.body?.cancel().catch(() => {});
    return res.status;
  };

  const deliver = async (
    endpoint: Endpoint,
    eventId: string,
    body: string,
  ): Promise<DeliveryOutcome> => {
    if (hasCredentials(endpoint.url)) {
      // Registrado antes de que la API lo rechazara: fetch no lo envía nunca, reintentar no sirve.
      return { ok: false, permanent: true, reason: "has a user or password in its URL" };
    }
    let secrets: string[];
    try {
      secrets = [
        await deps.secretBox.decrypt(
          endpoint.secretEncrypted,
          secretContext.webhookSecret(endpoint.id),
        ),
      ];
      // Rotación en curso: también firma el anterior, hasta que vence.
      const previous = endpoint.previousSecretEncrypted;
      if (previous && endpoint.previousSigns) {
        secrets.push(
          await deps.secretBox.decrypt(previous, secretContext.previousWebhookSecret(endpoint.id)),
        );
      }
    } catch (err) {
      // Sin la clave con que se selló (ENCRYPTION_KEYS a medio rotar): el receptor no tiene la
      // culpa. Se reintenta (otro worker puede tenerla) y no cuenta para desactivar el endpoint.
      const reason = `signing secret cannot be decrypted by this worker: ${errorMessage(err)}`;
      return { ok: false, permanent: false, platform: true, reason };
    }
    let status: number;
    try {
      status = await post(endpoint, secrets, eventId, body);
    } catch (err) {
      if (isBlockedDestination(err)) {
        // Reintentar no cambia la red del destino; tampoco se dice si algo respondió allí.
        const reason = "resolves to a private or reserved address (not delivered)";
        return { ok: false, permanent: true, reason };
      }
      // El mensaje puede repetir la URL (p. ej., "Failed to parse URL from …"), y su ruta o query pueden
      // llevar un token: va a logs, a la DLQ y al correo de operaciones sin ella.
      const reason = errorMessage(err).split(endpoint.url).join(redactUrl(endpoint.url));
      return { ok: false, permanent: false, reason: `failed: ${reason}` };
    }
    if (status < 200 || status >= 300) {
      return { ok: false, permanent: isPermanentStatus(status), reason: `answered ${status}` };
    }
    try {
      // Con la entrega, la racha de fallos del endpoint vuelve a 0.
      await executeAll(deps.db, [
        deps.db
          .insert(webhookDeliveries)
          .values({ eventId, endpointId: endpoint.id })
          .onConflictDoNothing(),
        deps.db.delete(webhookFailures).where(eq(webhookFailures.endpointId, endpoint.id)),
      ]);
    } catch (err) {
      // Entregado pero sin registrar: se reenviará (el receptor deduplica por id de evento).
      return {
        ok: false,
        permanent: false,
        reason: `delivered but not recorded: ${errorMessage(err)}`,
      };
    }
    return { ok: true };
  };

  /**
   * Endpoints activos que deben recibir los eventos de la instancia, en orden de id, y la hora de
   * la base (el vencimiento del secreto anterior lo fijó ella: con ella se compara).
   */
  const endpointsFor = async (
    tenantInstanceId: string,
    productId: string,
    logger: Logger,
  ): Promise<Endpoint[]> => {
    const sentAt = Date.now();
    const rows = await deps.db
      .select({
        ...getTableColumns(webhookEndpoints),
        previousSigns: sql<boolean>`coalesce(${webhookEndpoints.previousSecretExpiresAt} > clock_timestamp(), false)`,
        databaseMs: sql<number>`(extract(epoch from clock_timestamp()) * 1000)::float8`,
      })
      .from(webhookEndpoints)
      .where(
        and(
          eq(webhookEndpoints.active, true),
          or(
            eq(webhookEndpoints.tenantInstanceId, tenantInstanceId),
            eq(webhookEndpoints.productId, productId),
          ),
        ),
      )
      .orderBy(asc(webhookEndpoints.id));
    const [first] = rows;
    if (first) {
      // La mitad del viaje de ida y vuelta: la base leyó su reloj en algún punto intermedio.
      clockOffsetMs = Number(first.databaseMs) - (sentAt + Date.now()) / 2;
      if (Math.abs(clockOffsetMs) > CLOCK_SKEW_WARNING_MS && Date.now() - skewWarnedAt > 600_000) {
        skewWarnedAt = Date.now();
        logger.warn(
          { clockOffsetMs: Math.round(clockOffsetMs) },
          "this host's clock differs from the database's; webhook signatures use the database clock (check NTP)",
        );
      }
    }
    return rows.map(({ databaseMs: _ms, ...endpoint }) => endpoint);
  };

  const productOf = async (tenantInstanceId: string) => {
    const [instance] = await deps.db
      .select({ productId: tenantInstances.productId })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, tenantInstanceId));
    return instance?.productId;
  };

  /** Los endpoints que aún no recibieron el evento. */
  const pendingOf = async (endpoints: Endpoint[], eventId: string) => {
    const delivered = new Set(
      (
        await deps.db
          .select({ endpointId: webhookDeliveries.endpointId })
          .from(webhookDeliveries)
          .where(eq(webhookDeliveries.eventId, eventId))
      ).map((r) => r.endpointId),
    );
    return endpoints.filter((e) => !delivered.has(e.id));
  };

  const disableAfter = deps.disableAfterFailures ?? DEFAULT_WEBHOOK_DISABLE_AFTER_FAILURES;

  /**
   * Entrega fallida del todo (el evento va a la DLQ): una fila por endpoint que falló y evento, así
   * una reentrega o un replay del mismo evento no cuenta dos veces. El que llega al tope se
   * desactiva (auditado). Sin esto, un destino roto de un producto con miles de instancias dejaba
   * una entrada de DLQ y un correo a operaciones por instancia en cada cambio del catálogo.
   */
  const countFailures = async (endpointIds: string[], eventId: string, logger: Logger) => {
    // Sin tope no hay racha que llevar.
    if (disableAfter === 0) return;
    const disabled = await deps.db.transaction(async (tx) => {
      await tx
        .insert(webhookFailures)
        .values(endpointIds.map((endpointId) => ({ endpointId, eventId })))
        .onConflictDoNothing();
      const streaks = await tx
        .select({ endpointId: webhookFailures.endpointId, events: count() })
        .from(webhookFailures)
        .where(inArray(webhookFailures.endpointId, endpointIds))
        .groupBy(webhookFailures.endpointId);
      const reached = streaks.filter((r) => r.events >= disableAfter);
      if (reached.length === 0) return [];
      const off = await tx
        .update(webhookEndpoints)
        .set({ active: false })
        .where(
          and(
            inArray(
              webhookEndpoints.id,
              reached.map((r) => r.endpointId),
            ),
            eq(webhookEndpoints.active, true),
          ),
        )
        .returning({ id: webhookEndpoints.id });
      const events = new Map(reached.map((r) => [r.endpointId, r.events]));
      for (const { id } of off) {
        await writeAudit(tx, {
          actor: WORKER_ACTOR,
          action: "webhook.disabled",
          entityType: "webhook_endpoint",
          entityId: id,
          before: { active: true },
          after: {
            active: false,
            failedEvents: events.get(id),
            reason: `${events.get(id)} events in a row not delivered`,
          },
          correlationId: eventId,
        });
      }
      return off.map(({ id }) => ({ id, failedEvents: events.get(id) }));
    });
    for (const endpoint of disabled) {
      logger.error(
        { webhookId: endpoint.id, failedEvents: endpoint.failedEvents },
        "webhook endpoint disabled after consecutive undelivered events; fix it and PATCH active=true",
      );
    }
  };

  return {
    name: INTEGRATION_WORKER,
    domain: "integration",
    filterSubject: subjects.entitlementsChanged,
    schema: integrationEventSchema,
    logFields: (data) => ({ tenantInstanceId: data.tenantInstanceId }),
    async handle(ctx) {
      const { webhookEventId, webhookOccurredAt, ...data } = ctx.data;
      const eventId = webhookEventId ?? ctx.envelope.id;
      const productId = await productOf(data.tenantInstanceId);
      if (!productId) return;
      const endpoints = await endpointsFor(data.tenantInstanceId, productId, ctx.logger);
      // Sin endpoints (lo común) no hace falta mirar entregas: una consulta menos por evento.
      if (endpoints.length === 0) return;
      const pending = await pendingOf(endpoints, eventId);
      if (pending.length === 0) return;
      const body = JSON.stringify({
        id: eventId,
        type: ctx.envelope.type,
        occurredAt: webhookOccurredAt ?? ctx.envelope.occurredAt,
        data,
      });
      const outcomes = await inLanes(pending, DELIVERY_LANES, async (endpoint) => {
        const outcome = await deliver(endpoint, eventId, body);
        if (outcome.ok) ctx.logger.info({ webhookId: endpoint.id }, "webhook delivered");
        else if (outcome.platform)
          ctx.logger.error(
            { webhookId: endpoint.id, reason: outcome.reason },
            "webhook not sent: check ENCRYPTION_KEYS on the workers",
          );
        else
          ctx.logger.warn(
            { webhookId: endpoint.id, permanent: outcome.permanent, reason: outcome.reason },
            "webhook delivery failed",
          );
        return outcome;
      });
      const failures: EndpointFailure[] = [];
      pending.forEach((endpoint, i) => {
        const outcome = outcomes[i];
        if (outcome && !outcome.ok) failures.push({ endpoint, ...outcome });
      });
      if (failures.length === 0) return;
      // Fallo definitivo (el runtime lo manda a la DLQ): cuenta para la racha de cada endpoint que
      // falló; uno que no se intentó (la base caída, el plazo vencido, sin su clave) no se cuenta.
      const allPermanent = failures.every((f) => f.permanent);
      const receivers = failures.filter((f) => !f.platform);
      if ((allPermanent || ctx.deliveryCount >= MAX_DELIVER) && receivers.length > 0) {
        await countFailures(
          receivers.map((f) => f.endpoint.id),
          eventId,
          ctx.logger,
        );
      }
      const message = describeFailures(failures, endpoints.length);
      // Con algún fallo transitorio se reintenta (también los permanentes, que no bloquean a nadie).
      if (allPermanent) throw new PermanentError(message);
      throw new Error(message);
    },
    async onDeadLetter(info, data) {
      if (!info.envelope || !data || data.webhookEventId) return;
      // La copia consultable guarda la clave de entrega (su replay salta los endpoints ya servidos)
      // y la hora del cambio (el replay lleva la original, no la suya).
      const withEventId = sql`jsonb_set(${dlqEntries.envelope}, '{data,webhookEventId}', to_jsonb(${info.envelope.id}::text))`;
      await deps.db
        .update(dlqEntries)
        .set({
          envelope: sql`jsonb_set(${withEventId}, '{data,webhookOccurredAt}', to_jsonb(${info.envelope.occurredAt}::text))`,
        })
        .where(
          and(
            eq(dlqEntries.stream, streams.integration.name),
            eq(dlqEntries.streamSequence, info.streamSequence),
            // Un stream recreado repite secuencias: la entrada es la de este mensaje.
            eq(dlqEntries.messageKey, info.envelope.id),
          ),
        );
      // A operaciones las avisa el runtime, como en cualquier dominio.
      return undefined;
    },
  };
}
