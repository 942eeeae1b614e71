import nodemailer, { type NodemailerError, type Transporter } from "nodemailer";
import { PermanentError } from "../runtime/errors";

export interface Mail {
  to: string;
  subject: string;
  text: string;
  /** Id estable (el del evento): un reenvío tras una caída lleva el mismo Message-ID. */
  messageId: string;
  /** La del handler: al vencer el drenaje de un SIGTERM se corta el envío en vez de seguir. */
  signal?: AbortSignal;
}

export interface Mailer {
  send(mail: Mail): Promise<void>;
  close(): void;
  /** true sin SMTP_URL: no se envía nada (el worker lo avisa en el log, sin el contenido). */
  logOnly: boolean;
}

/**
 * Plazos SMTP (ms). Los de nodemailer (2 min de conexión, 10 min de socket inactivo) dejaban un
 * servidor que saluda y calla ocupando un hueco del worker ~10 min por intento, con los avisos a
 * operaciones detrás. Un parámetro de SMTP_URL (`?socketTimeout=600000`) manda sobre estos.
 */
export const SMTP_TIMEOUTS = {
  connectionTimeout: 10_000,
  greetingTimeout: 10_000,
  // Unos minutos, no segundos: tras el fin de DATA un relay puede tardar en analizar el correo
  // (RFC 5321 §4.5.3.2.6 sugiere 10 min) y cortar antes lo reenviaría, duplicado.
  socketTimeout: 180_000,
} as const;

export function createMailer(options: {
  smtpUrl?: string;
  from: string;
  timeouts?: Partial<Record<keyof typeof SMTP_TIMEOUTS, number>>;
}): Mailer {
  const transport: Transporter = options.smtpUrl
    ? nodemailer.createTransport({
        ...SMTP_TIMEOUTS,
        ...options.timeouts,
        url: options.smtpUrl,
      })
    : nodemailer.createTransport({ jsonTransport: true });
  return {
    logOnly: !options.smtpUrl,
    async send(mail) {
      try {
        await transport.sendMail({
          from: options.from,
          to: mail.to,
          subject: mail.subject,
          text: mail.text,
          messageId: `<${mail.messageId}@farutech.orchestrator>`,
          ...(mail.signal ? { signal: mail.signal } : {}),
        });
      } catch (err) {
        throw classifySmtpError(err);
      }
    },
    close: () => transport.close(),
  };
}

/**
 * Un rechazo definitivo del servidor SMTP (5xx salvo 503, según nodemailer: buzón inexistente,
 * dirección inválida) o una dirección que ni se puede enviar no se arreglan reintentando: van
 * directo a la DLQ y se reprocesan tras corregir el dato. 4xx (greylisting, buzón lleno), 503 y
 * los fallos de conexión siguen siendo transitorios.
 */
export function classifySmtpError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const { permanent, responseCode, code } = err as NodemailerError;
  const rejected = permanent === true || (responseCode === undefined && code === "EENVELOPE");
  if (!rejected) return err;
  return new PermanentError(`SMTP rejected the message: ${err.message}`, { cause: err });
}
