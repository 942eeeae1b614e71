import { describe, expect, it } from "vitest";
import { newId } from "../../core/ids";
import { captureLogs } from "../../test/support/logs";
import { PermanentError } from "../runtime/errors";
import { createMailer } from "./mailer";
import { notificationWorker } from "./worker";

// Sin SMTP_URL no sale ningún correo: el operador lo ve en el log (el tipo, sin destinatario ni
// cuerpo), en vez de un "notification sent" que no es verdad.
describe("notifications without SMTP_URL", () => {
  it("warns that the notification was not sent, and keeps addresses out of the log", async () => {
    const { logger, lines } = captureLogs("log-only-test");
    const mailer = createMailer({ from: "orchestrator@farutech.test" });
    expect(mailer.logOnly).toBe(true);
    const worker = notificationWorker({
      // El aviso de la DLQ no lee la base.
      db: undefined as never,
      mailer,
      opsEmail: "ops-alerts@farutech.test",
    });
    await worker.handle({
      data: {
        domain: "billing",
        worker: "billing-worker",
        subject: "billing.tasks.cycle",
        streamSequence: 7,
        eventId: newId(),
        eventType: "billing.cycle",
        deliveries: 5,
        errorKind: "transient",
        error: "boom",
      },
      envelope: {
        id: newId(),
        type: "notifications.dead_lettered",
        occurredAt: new Date().toISOString(),
        correlationId: "corr-log-only",
        data: {},
      },
      subject: "notifications.tasks.dead_lettered",
      deliveryCount: 1,
      logger,
      heartbeat: () => {},
      signal: new AbortController().signal,
    });
    mailer.close();
    expect(lines.map((l) => [l.level, l.msg, l.notification])).toEqual([
      ["warn", "notification not sent: SMTP_URL is not set", "dead_lettered"],
    ]);
    expect(JSON.stringify(lines)).not.toContain("ops-alerts@");
  });
});

describe("notification log fields", () => {
  it("carry the task id of a provisioning failure alert, and the instance of any notification about one", () => {
    const worker = notificationWorker({
      db: undefined as never,
      mailer: createMailer({ from: "orchestrator@farutech.test" }),
      opsEmail: "ops-alerts@farutech.test",
    });
    const taskId = newId();
    const tenantInstanceId = newId();
    expect(worker.logFields?.({ taskId, tenantInstanceId, error: "boom", deliveries: 5 })).toEqual({
      taskId,
      tenantInstanceId,
    });
    expect(worker.logFields?.({ tenantInstanceId, customerId: newId() })).toEqual({
      tenantInstanceId,
    });
  });
});

// Qué aviso es lo dice su subject. Antes, la forma del mensaje: uno de un tipo nuevo (de una
// versión más nueva) que trajera tenantInstanceId y customerId salía como bienvenida al cliente.
describe("notification dispatch", () => {
  const sent: string[] = [];
  const worker = notificationWorker({
    db: undefined as never,
    mailer: {
      logOnly: false,
      async send(mail) {
        sent.push(mail.subject);
      },
      close() {},
    } as ReturnType<typeof createMailer>,
    opsEmail: "ops-alerts@farutech.test",
  });
  const deliver = (subject: string, data: Record<string, unknown>) =>
    worker.handle({
      data: data as never,
      envelope: {
        id: newId(),
        type: "notification.x",
        occurredAt: new Date().toISOString(),
        correlationId: null,
        data,
      },
      subject,
      deliveryCount: 1,
      logger: captureLogs("dispatch-test").logger,
      heartbeat: () => {},
      signal: new AbortController().signal,
    });

  it("does not take a notification of an unknown subject for a welcome", async () => {
    const look = { tenantInstanceId: newId(), customerId: newId(), reason: "renewal" };
    await expect(deliver("notifications.tasks.subscription_renewed", look)).rejects.toThrow(
      /notifications\.tasks\.subscription_renewed/,
    );
    expect(sent).toEqual([]);
  });

  it("refuses, as permanent, data that does not match its subject", async () => {
    const err = await deliver("notifications.tasks.welcome", {
      taskId: newId(),
      tenantInstanceId: newId(),
      error: "boom",
      deliveries: 5,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect(sent).toEqual([]);
  });
});
