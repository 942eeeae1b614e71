import nodemailer, { type Transporter } from "nodemailer";

export interface Mail {
  to: string;
  subject: string;
  text: string;
  /** Id estable (el del evento): un reenvío tras una caída lleva el mismo Message-ID. */
  messageId: string;
}

export interface Mailer {
  send(mail: Mail): Promise<void>;
  close(): void;
  /** true si solo registra en el log (sin SMTP_URL configurado). */
  logOnly: boolean;
}

export function createMailer(options: { smtpUrl?: string; from: string }): Mailer {
  const transport: Transporter = options.smtpUrl
    ? nodemailer.createTransport(options.smtpUrl)
    : nodemailer.createTransport({ jsonTransport: true });
  return {
    logOnly: !options.smtpUrl,
    async send(mail) {
      await transport.sendMail({
        from: options.from,
        to: mail.to,
        subject: mail.subject,
        text: mail.text,
        messageId: `<${mail.messageId}@farutech.orchestrator>`,
      });
    },
    close: () => transport.close(),
  };
}
