import { eq } from "drizzle-orm";
import type { ParsedMail } from "mailparser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { customers } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { demoProvisionBody } from "../support/demo";
import { call } from "../support/http";
import { failingRegistry, type SmtpCapture, startSmtpCapture } from "../support/smtp";
import { startTestStack, type TestStack, waitFor } from "../support/stack";

// NotificationWorker contra un servidor SMTP real levantado en la prueba (smtp-server).
describe("notification worker", () => {
  let stack: TestStack;
  let smtp: SmtpCapture | undefined;
  let mails: ParsedMail[] = [];
  // Intentos RCPT TO por dirección: el greylisting rechaza el primero con 451.
  const rcptAttempts = new Map<string, number>();
  let registry: ReturnType<typeof failingRegistry>;

  beforeAll(async () => {
    smtp = await startSmtpCapture({
      onRcptTo(address, _session, callback) {
        const n = (rcptAttempts.get(address.address) ?? 0) + 1;
        rcptAttempts.set(address.address, n);
        const reject = (code: number, message: string) =>
          callback(Object.assign(new Error(message), { responseCode: code }));
        if (address.address.endsWith("@rejected.test")) return reject(550, "No such mailbox");
        if (address.address.endsWith("@greylist.test") && n === 1) {
          return reject(451, "Greylisted, try again later");
        }
        callback();
      },
    });
    mails = smtp.mails;
    registry = failingRegistry();
    stack = await startTestStack({
      database: "postgres",
      registry,
      env: { SMTP_URL: `smtp://127.0.0.1:${smtp.port}`, OPS_ALERT_EMAIL: "ops@farutech.test" },
    });
    registry.attach(stack);
    await seedDemo(stack.db.handle.db);
  });

  afterAll(async () => {
    await stack?.stop();
    await smtp?.close();
  });

  it("sends the welcome email to the customer's billing address after provisioning", async () => {
    const token = await stack.adminToken();
    const body = await demoProvisionBody(stack.db.handle.db, "welcome-1");
    const res = await call<{ tenantCode: string }>(`${stack.adminUrl}/api/provisioning/provision`, {
      token,
      json: body,
    });
    expect(res.status).toBe(202);
    const [customer] = await stack.db.handle.db
      .select()
      .from(customers)
      .where(eq(customers.id, String(body.customerId)));
    const mail = await waitFor(async () =>
      mails.find((m) => m.text?.includes(res.body.tenantCode)),
    );
    expect(mail.subject).toContain("Bienvenido");
    expect(JSON.stringify(mail.to)).toContain(customer?.billingEmail);
    expect(mail.messageId).toMatch(/@farutech\.orchestrator>$/);
  });

  it("alerts operations when a provisioning task is dead-lettered", async () => {
    const token = await stack.adminToken();
    const res = await call<{ taskId: string; tenantCode: string }>(
      `${stack.adminUrl}/api/provisioning/provision`,
      {
        token,
        json: await demoProvisionBody(stack.db.handle.db, "fail-1"),
      },
    );
    expect(res.status).toBe(202);
    const mail = await waitFor(
      async () => mails.find((m) => m.subject?.includes(res.body.tenantCode)),
      {
        timeoutMs: 25_000,
      },
    );
    expect(mail.subject).toContain("DLQ");
    expect(JSON.stringify(mail.to)).toContain("ops@farutech.test");
    expect(mail.text).toContain(res.body.taskId);
    expect(mail.text).toContain("external system down");
  }, 40_000);

  const customerWithEmail = async (billingEmail: string) => {
    const token = await stack.adminToken();
    const res = await call<{ id: string }>(`${stack.adminUrl}/api/customers`, {
      token,
      json: {
        legalName: `Cliente ${billingEmail}`,
        taxId: `9${Date.now().toString().slice(-8)}${rcptAttempts.size}`,
        billingEmail,
        country: "CO",
      },
    });
    expect(res.status).toBe(201);
    return res.body.id;
  };

  it("dead-letters a welcome the SMTP server rejects for good (5xx) after one attempt", async () => {
    const token = await stack.adminToken();
    const address = `nadie-${process.pid}@rejected.test`;
    const customerId = await customerWithEmail(address);
    const res = await call<{ tenantInstanceId: string }>(
      `${stack.adminUrl}/api/provisioning/provision`,
      { token, json: await demoProvisionBody(stack.db.handle.db, "rejected-1", { customerId }) },
    );
    expect(res.status).toBe(202);
    const entry = await waitFor(async () => {
      const listed = await call<{
        items: { deliveries: number; errorKind: string; error: string; payload: unknown }[];
      }>(`${stack.adminUrl}/api/dlq?domain=notifications`, { token });
      return listed.body.items.find((e) =>
        JSON.stringify(e.payload).includes(res.body.tenantInstanceId),
      );
    });
    // Sin los 5 intentos con backoff: un 550 no cambia reintentando.
    expect(entry).toMatchObject({ deliveries: 1, errorKind: "permanent" });
    expect(entry.error).toMatch(/SMTP rejected the message.*550/);
    expect(rcptAttempts.get(address)).toBe(1);
  });

  it("retries a welcome the SMTP server defers (4xx) and delivers it", async () => {
    const address = `gris-${process.pid}@greylist.test`;
    const customerId = await customerWithEmail(address);
    const token = await stack.adminToken();
    const res = await call<{ tenantCode: string }>(`${stack.adminUrl}/api/provisioning/provision`, {
      token,
      json: await demoProvisionBody(stack.db.handle.db, "greylist-1", { customerId }),
    });
    expect(res.status).toBe(202);
    const mail = await waitFor(
      async () => mails.find((m) => m.text?.includes(res.body.tenantCode)),
      { timeoutMs: 15_000 },
    );
    expect(JSON.stringify(mail.to)).toContain(address);
    expect(rcptAttempts.get(address)).toBe(2);
  }, 30_000);
});
