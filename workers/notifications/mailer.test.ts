import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loggableError } from "../../core/http/db-errors";
import { type SmtpCapture, startSmtpCapture } from "../../test/support/smtp";
import { errorMessage, isPermanent } from "../runtime/errors";
import { createMailer } from "./mailer";

// Servidor SMTP real que rechaza repitiendo la dirección, como Postfix: el texto del error va a
// la DLQ, a la cabecera del mensaje en JetStream y a los logs, que no guardan datos personales
// (el borrado GDPR no llega a JetStream ni a los logs).
describe("mailer errors", () => {
  let smtp: SmtpCapture;
  beforeAll(async () => {
    smtp = await startSmtpCapture({
      onRcptTo(address, _session, callback) {
        const error = Object.assign(
          new Error(
            address.address.startsWith("full")
              ? `<${address.address}>: Mailbox full`
              : `<${address.address}>: Recipient address rejected: User unknown`,
          ),
          { responseCode: address.address.startsWith("full") ? 452 : 550 },
        );
        callback(error);
      },
    });
  });
  afterAll(async () => smtp?.close());

  const failure = async (to: string) => {
    const mailer = createMailer({
      smtpUrl: `smtp://127.0.0.1:${smtp.port}`,
      from: "ops@farutech.test",
    });
    try {
      return await mailer
        .send({ to, subject: "Bienvenida", text: "hola", messageId: "m-1" })
        .then(() => undefined)
        .catch((err: unknown) => err);
    } finally {
      mailer.close();
    }
  };

  it("keeps the SMTP reply but not the recipient's address, rejected or retried", async () => {
    for (const [to, permanent, code] of [
      ["juana.perez@clinica.example", true, "550"],
      ["full.box+x@clinica.example", false, "452"],
    ] as const) {
      const err = await failure(to);
      expect(err).toBeInstanceOf(Error);
      expect(isPermanent(err)).toBe(permanent);
      const text = errorMessage(err);
      expect(text).toContain(code);
      expect(text).not.toContain("clinica.example");
      expect(JSON.stringify(loggableError(err))).not.toContain("clinica.example");
    }
  });
});
