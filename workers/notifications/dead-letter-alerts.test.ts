import { count, eq, isNull } from "drizzle-orm";
import type { ParsedMail } from "mailparser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { advisoryStream, streams, subjects } from "../../contracts/streams";
import type { Bus } from "../../core/bus";
import { newId } from "../../core/ids";
import { dlqEntries, outboxEvents } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { demoProvisionBody } from "../../test/support/demo";
import { call } from "../../test/support/http";
import { failingRegistry, type SmtpCapture, startSmtpCapture } from "../../test/support/smtp";
import { startTestStack, type TestStack, waitFor } from "../../test/support/stack";
import { BILLING_WORKER } from "../billing/worker";
import { INTEGRATION_WORKER } from "../integration/worker";
import { PROVISIONING_WORKER } from "../provisioning/worker";
import { NOTIFICATION_WORKER } from "./worker";

const OPS = "ops-alerts@farutech.test";

// Aviso a operaciones de la DLQ de cualquier dominio, con el cableado real y un SMTP real.
describe("dead-letter alerts to operators", () => {
  let stack: TestStack;
  let smtp: SmtpCapture | undefined;
  let bus: Bus;
  let mails: ParsedMail[] = [];

  beforeAll(async () => {
    smtp = await startSmtpCapture();
    mails = smtp.mails;
    const registry = failingRegistry();
    stack = await startTestStack({
      database: "postgres",
      registry,
      env: { SMTP_URL: `smtp://127.0.0.1:${smtp.port}`, OPS_ALERT_EMAIL: OPS },
    });
    registry.attach(stack);
    await seedDemo(stack.db.handle.db);
    if (!stack.workers) throw new Error("the stack runs its workers");
    bus = stack.workers.bus;
  });

  afterAll(async () => {
    await stack?.stop();
    await smtp?.close();
  });

  const mailsMentioning = (text: string) =>
    mails.filter((m) => `${m.subject ?? ""}\n${m.text ?? ""}`.includes(text));

  /**
   * Hasta que no quede nada por hacer: el outbox publicado y cada worker (y su oyente de
   * advisories) sin mensajes pendientes ni sin ack. Un correo duplicado tardío ya habría llegado;
   * una espera fija podía acabar antes y no verlo.
   */
  const settled = async () => {
    const jsm = await bus.jsm();
    const consumers: [string, string][] = [
      [streams.billing.name, BILLING_WORKER],
      [streams.provisioning.name, PROVISIONING_WORKER],
      [streams.notifications.name, NOTIFICATION_WORKER],
      [streams.integration.name, INTEGRATION_WORKER],
    ];
    await waitFor(
      async () => {
        const [unpublished] = await stack.db.handle.db
          .select({ n: count() })
          .from(outboxEvents)
          .where(isNull(outboxEvents.publishedAt));
        if ((unpublished?.n ?? 1) > 0) return undefined;
        for (const [stream, name] of consumers) {
          for (const [s, c] of [
            [stream, name],
            [advisoryStream.name, `${name}-advisories`],
          ] as const) {
            const i = await jsm.consumers.info(s, c);
            if (i.num_pending > 0 || i.num_ack_pending > 0) return undefined;
          }
        }
        return true;
      },
      { timeoutMs: 20_000 },
    );
  };

  /** Mensajes de aviso genérico publicados en NOTIFICATIONS hasta ahora. */
  const genericAlertsQueued = async () => {
    const info = await (await bus.jsm()).streams.info(streams.notifications.name, {
      subjects_filter: subjects.deadLetteredNotification,
    });
    return info.state.subjects?.[subjects.deadLetteredNotification] ?? 0;
  };

  it("e-mails operators when a billing message is dead-lettered, with its identifiers and without its payload", async () => {
    const eventId = newId();
    const correlationId = `corr-billing-dlq-${process.pid}`;
    // Un periodo inválido: error permanente, a la DLQ en la primera entrega.
    await bus.publishEvent(subjects.billingCycle, {
      id: eventId,
      type: "billing.cycle",
      occurredAt: new Date().toISOString(),
      correlationId,
      data: { period: "2025-13", contactEmail: "juana.perez@cliente.test" },
    });
    const mail = await waitFor(async () => mailsMentioning(eventId)[0], { timeoutMs: 20_000 });
    expect(JSON.stringify(mail.to)).toContain(OPS);
    expect(mail.subject).toContain("DLQ");
    expect(mail.subject).toContain("billing");
    expect(mail.text).toContain("billing-worker");
    expect(mail.text).toContain(subjects.billingCycle);
    expect(mail.text).toContain(correlationId);
    expect(mail.text).toContain("failed its schema");
    // Datos personales del payload: se consultan en la DLQ, no viajan por correo.
    expect(`${mail.subject}\n${mail.text}`).not.toContain("juana.perez");
    expect(`${mail.subject}\n${mail.text}`).not.toContain("2025-13");
    const [entry] = await stack.db.handle.db
      .select()
      .from(dlqEntries)
      .where(eq(dlqEntries.eventId, eventId));
    expect(entry?.domain).toBe("billing");
    // Un solo correo por mensaje muerto.
    await settled();
    expect(mailsMentioning(eventId)).toHaveLength(1);
  }, 40_000);

  it("alerts once for a dead-lettered provisioning task: its own e-mail, not also the generic one", async () => {
    const token = await stack.adminToken();
    const correlationId = `corr-prov-dlq-${process.pid}`;
    const before = await genericAlertsQueued();
    const res = await call<{ taskId: string; tenantCode: string }>(
      `${stack.adminUrl}/api/provisioning/provision`,
      {
        token,
        json: {
          ...(await demoProvisionBody(stack.db.handle.db, "fail-alert-1")),
          correlationId,
        },
      },
    );
    expect(res.status).toBe(202);
    const mail = await waitFor(async () => mailsMentioning(res.body.tenantCode)[0], {
      timeoutMs: 25_000,
    });
    expect(mail.text).toContain(res.body.taskId);
    expect(mail.text).toContain(correlationId);
    await settled();
    expect(mailsMentioning(correlationId)).toHaveLength(1);
    expect(await genericAlertsQueued()).toBe(before);
  }, 40_000);

  it("does not e-mail operators about a dead-lettered notification (no alert loop)", async () => {
    const eventId = newId();
    const correlationId = `corr-notif-dlq-${process.pid}`;
    const before = await genericAlertsQueued();
    await bus.publishEvent(subjects.welcomeNotification, {
      id: eventId,
      type: "notification.welcome",
      occurredAt: new Date().toISOString(),
      correlationId,
      data: { tenantInstanceId: "not-a-uuid" },
    });
    await waitFor(async () => {
      const [entry] = await stack.db.handle.db
        .select()
        .from(dlqEntries)
        .where(eq(dlqEntries.eventId, eventId));
      return entry;
    });
    await settled();
    expect(mailsMentioning(eventId)).toEqual([]);
    expect(mailsMentioning(correlationId)).toEqual([]);
    expect(await genericAlertsQueued()).toBe(before);
  }, 30_000);
});
