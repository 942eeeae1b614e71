import { eq, sql } from "drizzle-orm";
import { AppError } from "../../core/errors";
import { errorMessage } from "../../core/http/db-errors";
import { newId, randomToken } from "../../core/ids";
import { type SecretBox, secretContext } from "../../core/secret-box";
import { products, tenantInstances, webhookEndpoints, webhookFailures } from "../../db/schema";
import type { Tx } from "../../db/types";
import {
  auditedWebhook,
  type CreateWebhookInput,
  type UpdateWebhookInput,
  type WebhookRow,
} from "../routes/webhooks/schema";
import { assertVersion, type IfMatch, notFound } from "./concurrency";
import { domainEvent, mutate, type ServiceContext } from "./mutation";

function boxForSecrets(box: SecretBox | undefined): SecretBox {
  if (!box) {
    throw new AppError(
      "unavailable",
      "Webhooks need ENCRYPTION_KEYS to store their signing secrets",
    );
  }
  return box;
}

const newWebhookSecret = () => `whsec_${randomToken(24)}`;

export async function createWebhook(
  ctx: ServiceContext,
  maybeBox: SecretBox | undefined,
  input: CreateWebhookInput,
): Promise<{ row: WebhookRow; secret: string }> {
  const box = boxForSecrets(maybeBox);
  const secret = newWebhookSecret();
  // El id va en el contexto del secreto cifrado: se fija antes de insertar.
  const id = newId();
  const sealed = await box.encrypt(secret, secretContext.webhookSecret(id));
  const row = await mutate(ctx, async (tx) => {
    await assertTargetExists(tx, input);
    const [inserted] = await tx
      .insert(webhookEndpoints)
      .values({
        id,
        productId: input.productId ?? null,
        tenantInstanceId: input.tenantInstanceId ?? null,
        url: input.url,
        secretEncrypted: sealed,
        encryptionKeyId: box.activeKeyId,
      })
      .returning();
    if (!inserted) throw new Error("webhook insert returned nothing");
    return {
      result: inserted,
      audit: [
        {
          action: "webhook.created",
          entityType: "webhook_endpoint",
          entityId: inserted.id,
          after: auditedWebhook(inserted),
        },
      ],
      events: [domainEvent("webhook", "created", { webhookId: inserted.id })],
    };
  });
  return { row, secret };
}

/**
 * 404 que nombra el campo si el producto o la instancia no existen, como las demás altas. FOR SHARE:
 * una baja concurrente espera a este alta en vez de hacerla fallar en la FK.
 */
async function assertTargetExists(tx: Tx, input: CreateWebhookInput): Promise<void> {
  if (input.productId !== undefined) {
    const [product] = await tx
      .select({ id: products.id })
      .from(products)
      .where(eq(products.id, input.productId))
      .for("share");
    if (!product) {
      throw new AppError("not_found", `Product ${input.productId} does not exist`, {
        fields: [{ path: "body.productId", message: "Unknown product" }],
      });
    }
  }
  if (input.tenantInstanceId !== undefined) {
    const [instance] = await tx
      .select({ id: tenantInstances.id })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, input.tenantInstanceId))
      .for("share");
    if (!instance) {
      throw new AppError("not_found", `Tenant instance ${input.tenantInstanceId} does not exist`, {
        fields: [{ path: "body.tenantInstanceId", message: "Unknown tenant instance" }],
      });
    }
  }
}

/**
 * Bloquea el endpoint y comprueba If-Match contra la versión vigente: una edición concurrente no
 * puede cambiarlo entre la comprobación y la escritura.
 */
async function lockWebhook(tx: Tx, id: string, ifMatch: IfMatch): Promise<WebhookRow> {
  const [locked] = await tx
    .select()
    .from(webhookEndpoints)
    .where(eq(webhookEndpoints.id, id))
    .for("update");
  if (!locked) throw notFound("Webhook endpoint", id);
  assertVersion(locked.rowVersion, ifMatch, "Webhook endpoint", id);
  return locked;
}

export async function updateWebhook(
  ctx: ServiceContext,
  id: string,
  input: UpdateWebhookInput,
  ifMatch: IfMatch,
): Promise<WebhookRow> {
  return mutate(ctx, async (tx) => {
    const before = await lockWebhook(tx, id, ifMatch);
    // Lo que de verdad cambia: un PATCH con los mismos valores no se audita ni avisa a nadie.
    const changed = (Object.keys(input) as (keyof UpdateWebhookInput)[]).filter(
      (k) => input[k] !== undefined && input[k] !== before[k],
    );
    if (changed.length === 0) return { result: before, audit: [] };
    // row_version la sube el trigger de la tabla (migración 0024), solo si cambia url o active.
    // Reactivado o con otra URL: la racha de fallos que lo desactivó (worker) empieza de nuevo.
    if (changed.includes("url") || (changed.includes("active") && input.active === true)) {
      await tx.delete(webhookFailures).where(eq(webhookFailures.endpointId, id));
    }
    const [updated] = await tx
      .update(webhookEndpoints)
      .set(input)
      .where(eq(webhookEndpoints.id, id))
      .returning();
    if (!updated) throw new Error("webhook update returned nothing");
    return {
      result: updated,
      audit: [
        {
          action: "webhook.updated",
          entityType: "webhook_endpoint",
          entityId: id,
          before: auditedWebhook(before),
          // La URL va sin ruta: `changed` dice si cambió (sin huella que permita adivinarla).
          after: { ...auditedWebhook(updated), changed },
        },
      ],
      events: [domainEvent("webhook", "updated", { webhookId: id, changed })],
    };
  });
}

/**
 * Secreto nuevo para un endpoint (p. ej. tras una filtración). Con `overlapSeconds` > 0 el actual
 * pasa a anterior y sigue firmando junto al nuevo hasta vencer: el receptor cambia el suyo sin
 * rechazar eventos. Con 0, el actual deja de valer ya (y el anterior de otra rotación, también).
 */
export async function rotateWebhookSecret(
  ctx: ServiceContext,
  maybeBox: SecretBox | undefined,
  id: string,
  overlapSeconds: number,
): Promise<{ row: WebhookRow; secret: string }> {
  const box = boxForSecrets(maybeBox);
  const secret = newWebhookSecret();
  const sealed = await box.encrypt(secret, secretContext.webhookSecret(id));
  return mutate(ctx, async (tx) => {
    // Sin If-Match: la rotación no pisa un cambio de url o active (sí sube la versión, migración 0039).
    const before = await lockWebhook(tx, id, undefined);
    let previous: string | null = null;
    if (overlapSeconds > 0) {
      let current: string;
      try {
        current = await box.decrypt(before.secretEncrypted, secretContext.webhookSecret(id));
      } catch (err) {
        throw new AppError(
          "unavailable",
          `The current secret of webhook ${id} cannot be decrypted with ENCRYPTION_KEYS, so it cannot keep signing during an overlap (${errorMessage(err)}); rotate with overlapSeconds 0`,
        );
      }
      previous = await box.encrypt(current, secretContext.previousWebhookSecret(id));
    }
    const [updated] = await tx
      .update(webhookEndpoints)
      .set({
        secretEncrypted: sealed,
        encryptionKeyId: box.activeKeyId,
        previousSecretEncrypted: previous,
        previousSecretExpiresAt: previous
          ? sql`now() + make_interval(secs => ${overlapSeconds})`
          : null,
      })
      .where(eq(webhookEndpoints.id, id))
      .returning();
    if (!updated) throw new Error("webhook update returned nothing");
    const previousSecretExpiresAt = updated.previousSecretExpiresAt?.toISOString() ?? null;
    return {
      result: { row: updated, secret },
      audit: [
        {
          action: "webhook.secret_rotated",
          entityType: "webhook_endpoint",
          entityId: id,
          before: auditedWebhook(before),
          after: auditedWebhook(updated),
        },
      ],
      events: [
        domainEvent("webhook", "secret_rotated", { webhookId: id, previousSecretExpiresAt }),
      ],
    };
  });
}

export async function deleteWebhook(
  ctx: ServiceContext,
  id: string,
  ifMatch: IfMatch,
): Promise<void> {
  await mutate(ctx, async (tx) => {
    const gone = await lockWebhook(tx, id, ifMatch);
    await tx.delete(webhookEndpoints).where(eq(webhookEndpoints.id, id));
    const { audit, event } = webhookDeleted(gone);
    return { result: undefined, audit: [audit], events: [event] };
  });
}

/**
 * Auditoría y evento de la baja de un endpoint: los mismos si se borra por su ruta o si lo arrastra
 * el borrado de su producto (ON DELETE CASCADE).
 */
export function webhookDeleted(gone: WebhookRow) {
  return {
    audit: {
      action: "webhook.deleted",
      entityType: "webhook_endpoint",
      entityId: gone.id,
      before: auditedWebhook(gone),
    },
    event: domainEvent("webhook", "deleted", { webhookId: gone.id }),
  };
}
