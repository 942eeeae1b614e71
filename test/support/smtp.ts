import { type ParsedMail, simpleParser } from "mailparser";
import { SMTPServer, type SMTPServerOptions } from "smtp-server";
import {
  createPostgresRegistry,
  type SharedTenantRegistry,
} from "../../workers/provisioning/shared-registry";
import type { TestStack } from "./stack";

export interface SmtpCapture {
  port: number;
  /** Correos recibidos, ya parseados, en orden de llegada. */
  mails: ParsedMail[];
  close(): Promise<void>;
}

/** Servidor SMTP real en un puerto libre que guarda cada correo recibido. */
export async function startSmtpCapture(
  options: Pick<SMTPServerOptions, "onRcptTo"> = {},
): Promise<SmtpCapture> {
  const mails: ParsedMail[] = [];
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    ...options,
    onData(stream, _session, callback) {
      simpleParser(stream)
        .then((mail) => {
          mails.push(mail);
          callback();
        })
        .catch(callback);
    },
  });
  const port = await new Promise<number>((resolve) => {
    smtp.listen(0, "127.0.0.1", () => {
      const addr = smtp.server.address();
      resolve(typeof addr === "object" && addr ? addr.port : 0);
    });
  });
  return { port, mails, close: () => new Promise<void>((r) => smtp.close(() => r())) };
}

/**
 * Registro compartido real salvo para las instancias "…-fail-…", que fallan siempre en el paso
 * externo y acaban en la DLQ. El real se conecta con `attach` cuando la pila ya tiene base.
 */
export function failingRegistry(): SharedTenantRegistry & { attach(stack: TestStack): void } {
  let real: SharedTenantRegistry | undefined;
  return {
    attach(stack) {
      real = createPostgresRegistry(stack.db.url ?? "");
    },
    async register(productCode, tenant) {
      if (tenant.tenantCode.includes("-fail-")) throw new Error("external system down (injected)");
      await real?.register(productCode, tenant);
    },
    isRegistered: async (productCode, id) => (await real?.isRegistered(productCode, id)) ?? false,
    deactivate: async (productCode, ids) => (await real?.deactivate(productCode, ids)) ?? 0,
    dropTenant: async (productCode, id) =>
      (await real?.dropTenant(productCode, id)) ?? { rowsDeleted: 0 },
    close: async () => real?.close(),
  };
}
