import { describe, expect, it } from "vitest";
import { newId } from "../../core/ids";
import { captureLogs } from "../../test/support/logs";
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
